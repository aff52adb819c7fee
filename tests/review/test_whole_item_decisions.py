"""Whole-item (classifier) suggestions through the decision path: accept, edit of the
class, a class given to the whole item, and what the store's label resolver then says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from tiny_models import random_images, tiny_classifier

from engine.review.decisions import record_decision
from engine.review.scoring import queue_score
from engine.store import Store
from engine.types import Box, Feedback, Item


@pytest.fixture
def classified(store: Store, tmp_path: Path) -> dict[str, int]:
    """Three images classified by the tiny classifier ("cat" each); their suggestion ids."""
    import numpy as np

    items = []
    for n, image in enumerate(random_images(np.random.default_rng(0), ((40, 50),) * 3)):
        path = tmp_path / f"img{n}.png"
        Image.fromarray(image).save(path)
        items.append(Item(f"img-{n}", "image", uri=str(path)))
    store.add_items(items, [None] * len(items))
    predictions = tiny_classifier(winner=0).predict(items)
    store.save_predictions(predictions, [queue_score(p, "image") for p in predictions])
    ids = {}
    for item in items:
        (record,) = store.suggestions_for(item.item_id)
        assert record.suggestion.region is None and record.suggestion.label == "cat"
        ids[item.item_id] = record.suggestion_id
    return ids


def _post(client: TestClient, **body: Any) -> Any:
    response = client.post("/feedback", json=body, headers={"X-Annotator": "alice"})
    assert response.status_code in (200, 201), response.text
    return response.json()


def _labels(store: Store, item_id: str) -> list[tuple[str, Any, str]]:
    entry = store.item_labels(store.get_item(item_id))
    return [(lab.label, lab.region, lab.source) for lab in entry.labels]


def test_accepting_and_editing_whole_item_suggestions_over_http(
    client: TestClient, store: Store, classified: dict[str, int]
) -> None:
    _post(
        client, client_key="a", item_id="img-0", action="accept", suggestion_id=classified["img-0"]
    )
    edit = _post(
        client,
        client_key="b",
        item_id="img-1",
        action="edit",
        suggestion_id=classified["img-1"],
        label="dog",
    )
    assert edit["region"] is None and edit["label"] == "dog"
    assert edit["model_version"] == tiny_classifier(winner=0).version
    _post(
        client, client_key="c1", item_id="img-2", action="reject", suggestion_id=classified["img-2"]
    )
    _post(client, client_key="c2", item_id="img-2", action="edit", label="cup")
    assert _labels(store, "img-0") == [("cat", None, "accepted")]
    assert _labels(store, "img-1") == [("dog", None, "edited")]
    assert _labels(store, "img-2") == [("cup", None, "feedback")]
    entry = store.item_labels(store.get_item("img-1"))
    assert entry.reviewed and entry.decided_by == "person"


def test_record_decision_accepts_a_whole_item_class_and_refuses_a_text_region(
    store: Store, classified: dict[str, int]
) -> None:
    decision = record_decision(
        store, Feedback("img-0", "accept", "k-item", label="cat", annotator="bob")
    )
    assert decision.created and decision.record.feedback.region is None
    assert ("cat", None, "item_accepted") in _labels(store, "img-0")
    assert ("cat", None, "feedback") in _labels(store, "img-0")
    edited = record_decision(
        store,
        Feedback(
            "img-1", "edit", "k-box", suggestion_id=classified["img-1"], region=Box(1, 1, 9, 9)
        ),
    )
    assert edited.created  # an edit may also give a whole-item class a region
    assert _labels(store, "img-1") == [("cat", Box(1, 1, 9, 9), "edited")]
