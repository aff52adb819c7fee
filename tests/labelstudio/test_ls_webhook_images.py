"""Label Studio's webhook over HTTP on a real store, image annotations: accepted, moved,
dropped and drawn boxes, replays, updates, deletes, cancels, mask parts, chained predictions.

Webhook bodies are built the way Label Studio 1.23 sends them (tests/ml_backend.py):
the annotation's results start as the prediction
``engine.labelstudio.results.to_ls_prediction`` produced (result ids
``s<suggestion_id>``), then are kept, moved, dropped or drawn anew as an annotator
would. Texts, training and other actions: test_ls_webhook.py.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from ml_backend import (
    SIZE_PX,
    WEBHOOK_IMAGE_CONFIG,
    WEBHOOK_MASK_CONFIG,
    counts,
    is_labeled,
    result_by_id,
    seed,
    shown_results,
    suggestion,
    webhook_event,
)

from engine.imaging.masks import decode_rle, mask_to_region
from engine.store import Store
from engine.types import Box, Item, Mask, Prediction, Suggestion


@pytest.fixture
def image(store: Store) -> tuple[Item, list[int]]:
    item = Item("img-1", "image", uri="/data/a.png")
    ids = seed(
        store,
        item,
        [
            suggestion("cat", 0.9, Box(10, 10, 100, 100)),
            suggestion("cat", 0.8, Box(200, 50, 300, 150)),
            suggestion("dog", 0.7, Box(400, 300, 500, 400)),
            suggestion("cat", 0.1, Box(1, 1, 5, 5)),  # under the display threshold
            suggestion("bird", 0.9, Box(50, 50, 60, 60)),  # a class the project lacks
        ],
    )
    return item, ids


def _annotated(store: Store, item: Item, ids: list[int]) -> list[dict[str, Any]]:
    """Keep the first box, move the second 10 px right, drop the third, draw a new one."""
    results = copy.deepcopy(shown_results(store, item, WEBHOOK_IMAGE_CONFIG))
    result_by_id(results, ids[1])["value"]["x"] += 10 / SIZE_PX[0] * 100
    results.remove(result_by_id(results, ids[2]))
    new = copy.deepcopy(result_by_id(results, ids[0]))
    new["id"] = "Xq3kP_w1Zr"
    new["value"].update(x=50.0, y=50.0, width=10.0, height=10.0, rectanglelabels=["Dog"])
    return [*results, new]


def test_created_accepts_edits_rejects_and_keeps_new_regions(
    client: TestClient, store: Store, image: tuple[Item, list[int]]
) -> None:
    item, ids = image
    response = client.post(
        "/webhook", json=webhook_event("ANNOTATION_CREATED", 7, _annotated(store, item, ids))
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["items"]) == ("ok", ["img-1"])
    assert counts(body) == (1, 1, 1, 0, 1, 2, 0)
    status = {sid: store.get_suggestion(sid).status for sid in ids}
    assert status == {ids[0]: "accepted", ids[1]: "edited", ids[2]: "rejected"} | {
        ids[3]: "pending",
        ids[4]: "pending",
    }
    feedback = {
        r.feedback.client_key.rsplit(":", 1)[1]: r.feedback for r in store.feedback_for("img-1")
    }
    edit = feedback[f"s{ids[1]}"]
    assert edit.action == "edit" and edit.label is None  # only the geometry changed
    assert isinstance(edit.region, Box)
    assert np.allclose(edit.region.box_xyxy, (210, 50, 310, 150), atol=1e-6)
    assert edit.annotator == "labelstudio:1" and edit.model_version == "test-v1"
    drawn = feedback["n0"]
    assert (drawn.action, drawn.suggestion_id, drawn.label) == ("edit", None, "Dog")
    assert isinstance(drawn.region, Box)
    assert np.allclose(drawn.region.box_xyxy, (320, 240, 384, 288))
    assert feedback["item"].action == "accept"
    assert {feedback[f"s{ids[3]}"].action, feedback[f"s{ids[4]}"].action} == {"skip"}
    assert is_labeled(store, "img-1")


def test_replaying_a_webhook_records_nothing_new(
    client: TestClient, store: Store, image: tuple[Item, list[int]]
) -> None:
    item, ids = image
    event = webhook_event("ANNOTATION_CREATED", 7, _annotated(store, item, ids))
    first = client.post("/webhook", json=event).json()
    before = [(r.feedback_id, r.feedback.client_key) for r in store.feedback_for("img-1")]
    again = client.post("/webhook", json=event).json()
    assert counts(again) == counts(first)
    assert (first["recorded"], again["recorded"], again["withdrawn"]) == (len(before), 0, 0)
    assert [(r.feedback_id, r.feedback.client_key) for r in store.feedback_for("img-1")] == before


def test_update_supersedes_and_an_older_replay_is_ignored(
    client: TestClient, store: Store, image: tuple[Item, list[int]]
) -> None:
    item, ids = image
    created = webhook_event("ANNOTATION_CREATED", 7, _annotated(store, item, ids))
    assert client.post("/webhook", json=created).status_code == 200
    # The annotator restores the dropped box, relabels the first one, deletes the new one.
    results = copy.deepcopy(shown_results(store, item, WEBHOOK_IMAGE_CONFIG))
    result_by_id(results, ids[0])["value"]["rectanglelabels"] = ["Dog"]
    updated = webhook_event("ANNOTATION_UPDATED", 7, results, updated_at="2025-03-01T10:05:00Z")
    body = client.post("/webhook", json=updated).json()
    assert counts(body) == (2, 1, 0, 0, 0, 2, 0)
    assert body["withdrawn"] == body["recorded"] + 1  # the old version had one more: the drawn box
    status = [store.get_suggestion(sid).status for sid in ids[:3]]
    assert status == ["edited", "accepted", "accepted"]
    feedback = store.feedback_for("img-1")
    assert len({r.feedback.client_key.split(":v")[1][:12] for r in feedback}) == 1  # one version
    relabel = next(r.feedback for r in feedback if r.feedback.suggestion_id == ids[0])
    assert (relabel.action, relabel.label, relabel.region) == ("edit", "Dog", None)  # box kept
    stale = client.post("/webhook", json=created).json()  # a late retry of the first version
    assert stale["status"] == "skipped" and stale["recorded"] == 0
    assert "older than the version recorded" in stale["reasons"][0]
    assert [store.get_suggestion(sid).status for sid in ids[:3]] == status


def test_deleting_the_annotation_withdraws_its_feedback(
    client: TestClient, store: Store, image: tuple[Item, list[int]]
) -> None:
    item, ids = image
    created = client.post(
        "/webhook", json=webhook_event("ANNOTATION_CREATED", 7, _annotated(store, item, ids))
    )
    other = webhook_event("ANNOTATION_CREATED", 8, shown_results(store, item, WEBHOOK_IMAGE_CONFIG))
    other["annotation"]["completed_by"] = 2
    assert client.post("/webhook", json=other).json()["accepted"] == 3
    deleted = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 8}], "project": {"id": 1}}
    body = client.post("/webhook", json=deleted).json()
    assert (body["status"], body["withdrawn"]) == ("ok", 6)  # 3 accepts, 2 unseen, the item
    assert {r.feedback.annotator for r in store.feedback_for("img-1")} == {"labelstudio:1"}
    # Annotation 7's decisions are the latest again; deleting it too leaves nothing judged.
    assert [store.get_suggestion(s).status for s in ids[:3]] == ["accepted", "edited", "rejected"]
    deleted["annotations"] = [{"id": 7}]
    assert client.post("/webhook", json=deleted).json()["withdrawn"] == created.json()["recorded"]
    assert store.feedback_for("img-1") == []
    assert {store.get_suggestion(s).status for s in ids} == {"pending"}
    assert not is_labeled(store, "img-1")
    assert store.count_predictions() == 1 and len(store.suggestions_for("img-1")) == 5


def test_cancelled_annotation_is_a_skip(
    client: TestClient, store: Store, image: tuple[Item, list[int]]
) -> None:
    item, ids = image
    results = shown_results(store, item, WEBHOOK_IMAGE_CONFIG)
    body = client.post(
        "/webhook", json=webhook_event("ANNOTATION_CREATED", 9, results, cancelled=True)
    ).json()
    assert counts(body) == (0, 0, 0, 1, 0, 0, 0)
    [record] = store.feedback_for("img-1")
    assert (record.feedback.action, record.feedback.suggestion_id) == ("skip", None)
    assert not is_labeled(store, "img-1")
    assert {store.get_suggestion(s).status for s in ids} == {"pending"}


def test_masks_compare_brush_and_polygon_parts(client: TestClient, store: Store) -> None:
    pixels = np.zeros((SIZE_PX[1], SIZE_PX[0]), dtype=bool)
    pixels[100:180, 50:170] = True
    pixels[300:340, 400:460] = True  # a second part: a second polygon
    item = Item("img-2", "image", uri="/data/b.png")
    [sid] = seed(store, item, [suggestion("cat", 0.9, mask_to_region(pixels))])
    results = shown_results(store, item, WEBHOOK_MASK_CONFIG)
    assert sorted(r["id"] for r in results) == [f"s{sid}", f"s{sid}.1", f"s{sid}.2"]
    kept = client.post(
        "/webhook",
        json=webhook_event("ANNOTATION_CREATED", 20, results, config=WEBHOOK_MASK_CONFIG),
    )
    assert counts(kept.json()) == (1, 0, 0, 0, 0, 0, 0)
    erased = pixels.copy()
    erased[300:340] = False  # the annotator erased the second part with the brush
    brush = copy.deepcopy(result_by_id(results, sid))
    from engine.labelstudio.brush_rle import mask_to_brush_rle

    brush["value"]["rle"] = mask_to_brush_rle(erased)
    update = webhook_event(
        "ANNOTATION_UPDATED",
        20,
        [brush],
        config=WEBHOOK_MASK_CONFIG,
        updated_at="2025-03-02T00:00:00Z",
    )
    assert counts(client.post("/webhook", json=update).json()) == (0, 1, 0, 0, 0, 0, 0)
    edit = next(r.feedback for r in store.feedback_for("img-2") if r.feedback.suggestion_id == sid)
    assert edit.action == "edit" and isinstance(edit.region, Mask)
    assert np.array_equal(decode_rle(edit.region.mask_rle, *pixels.shape), erased)


def test_a_chained_prediction_is_judged_whole(client: TestClient, store: Store) -> None:
    """Boxes carry the detector's version, masks the segmenter's, the prediction a combined
    one: every suggestion of the prediction the annotator saw is judged."""
    config = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image"><Label value="Cat" predicted_values="cat"/>
  </RectangleLabels>
  <BrushLabels name="brush" toName="image"><Label value="Cat" predicted_values="cat"/>
  </BrushLabels>
</View>"""
    item = Item("chain-1", "image", uri="/data/upload/1/a.png")
    store.add_items([item], [None])
    mask = np.zeros((SIZE_PX[1], SIZE_PX[0]), dtype=bool)
    mask[100:200, 100:220] = True
    made = (
        Suggestion("cat", 0.9, Box(90, 90, 230, 210), "det", "det-v1"),
        Suggestion("cat", 0.8, Box(300, 300, 400, 400), "det", "det-v1"),
        Suggestion("cat", 0.85, mask_to_region(mask), "seg", "seg-v1", parent_index=0),
    )
    store.save_predictions(
        [Prediction(item.item_id, "det+seg", "det+seg-v1", made, np.zeros((3, 0), np.float32))],
        [0.5],
    )
    box_a, box_b, brush = (r.suggestion_id for r in store.suggestions_for(item.item_id))
    results = shown_results(store, item, config)
    kept = [r for r in results if r["id"] == f"s{box_a}"]  # box b and the mask dropped
    response = client.post(
        "/webhook", json=webhook_event("ANNOTATION_CREATED", 7, kept, config=config)
    )
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["rejected"]) == (1, 2)
    statuses = {r.suggestion_id: r.status for r in store.suggestions_for(item.item_id)}
    assert statuses == {box_a: "accepted", box_b: "rejected", brush: "rejected"}
