"""Who acts for whom, and someone else's lease, over HTTP on a real store.

A person's token acts for that person alone (``X-Annotator`` and a body
``annotator`` are the service token's); an annotator may not judge or
click-segment an item another person holds a live lease on (409 naming the
holder and the lease's end), a reviewer overrules, an unheld item is free.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from engine.config import Settings
from engine.ingest import ingest
from engine.models.sam.segmenter import SamSegmenter
from engine.review.people import add_person
from engine.segment.service import InteractiveSegmenter
from engine.serving.app import create_app
from engine.store import QueueFilter, Store
from engine.types import Box, Item, Prediction, Suggestion

SERVICE = {"Authorization": "Bearer test-token"}  # tests/conftest.py API_TOKEN
SCORES = {"img-a": 0.9, "img-b": 0.6, "img-c": 0.3}


def _save_prediction(store: Store, item_id: str, score: float) -> None:
    suggestion = Suggestion("cat", 0.8, Box(1, 1, 9, 9), "yolo11n", "yolo11n-v1")
    prediction = Prediction(
        item_id, "yolo11n", "yolo11n-v1", (suggestion,), np.array([[0.8]], np.float32), ("cat",)
    )
    store.save_predictions([prediction], [score])


@pytest.fixture
def items(store: Store) -> dict[str, int]:
    """Three scored image items, one suggestion each: item id -> suggestion id."""
    store.add_items([Item(i, "image", uri=f"/data/{i}.png") for i in SCORES], [None] * 3)
    for item_id, score in SCORES.items():
        _save_prediction(store, item_id, score)
    return {i: store.suggestions_for(i)[0].suggestion_id for i in SCORES}


@pytest.fixture
def people(store: Store) -> dict[str, dict[str, str]]:
    roles = {"ann": "annotator", "ben": "annotator", "rita": "reviewer"}
    return {
        name: {"Authorization": f"Bearer {add_person(store, name, role)[1]}"}
        for name, role in roles.items()
    }


@pytest.fixture
def api(settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store)) as client:
        yield client


def _until(expires_at: float) -> str:
    return datetime.fromtimestamp(expires_at, tz=UTC).isoformat(timespec="seconds")


# -- acting for someone --------------------------------------------------------------


def test_two_annotators_with_their_own_tokens_get_different_items(
    api: TestClient, people: dict[str, dict[str, str]], items: dict[str, int], store: Store
) -> None:
    ann = api.post("/queue/next", headers=people["ann"])
    ben = api.post("/queue/next", headers=people["ben"])
    assert (ann.status_code, ben.status_code) == (200, 200)
    assert (ann.json()["item_id"], ann.json()["annotator"]) == ("img-a", "ann")
    assert (ben.json()["item_id"], ben.json()["annotator"]) == ("img-b", "ben")
    assert api.post("/queue/next", headers=people["ann"]).json()["item_id"] == "img-a"
    assert store.lease_of("img-a").annotator == "ann"
    assert store.lease_of("img-b").annotator == "ben"


def test_the_service_token_without_x_annotator_is_anonymous(
    api: TestClient, items: dict[str, int], store: Store
) -> None:
    lease = api.post("/queue/next", headers=SERVICE).json()
    assert (lease["item_id"], lease["annotator"]) == ("img-a", "anonymous")
    assert api.post("/queue/next", headers=SERVICE).json()["item_id"] == "img-a"
    ada = api.post("/queue/next", headers={**SERVICE, "X-Annotator": "ada"}).json()
    assert (ada["item_id"], ada["annotator"]) == ("img-b", "ada")
    body = api.post("/queue/next", json={"annotator": "cy"}, headers=SERVICE).json()
    assert (body["item_id"], body["annotator"]) == ("img-c", "cy")
    feedback = api.post(
        "/feedback",
        json={"client_key": "s-1", "item_id": "img-a", "action": "skip"},
        headers=SERVICE,
    )
    assert feedback.status_code == 201 and feedback.json()["annotator"] == "anonymous"


def test_x_annotator_is_ignored_with_a_persons_token(
    api: TestClient, people: dict[str, dict[str, str]], items: dict[str, int], store: Store
) -> None:
    as_ben = {**people["ann"], "X-Annotator": "ben"}
    lease = api.post("/queue/next", headers=as_ben)
    assert lease.status_code == 200 and lease.json()["annotator"] == "ann"
    assert store.lease_of("img-a").annotator == "ann"
    beat = api.post("/queue/img-a/heartbeat", headers=as_ben)
    assert beat.status_code == 200 and beat.json()["annotator"] == "ann"
    body = {"client_key": "k-1", "item_id": "img-a", "action": "accept"}
    recorded = api.post("/feedback", json=body, headers=as_ben)
    assert recorded.status_code == 201 and recorded.json()["annotator"] == "ann"
    assert [r.feedback.annotator for r in store.feedback_for("img-a")] == ["ann"]


@pytest.mark.parametrize(
    ("url", "needs_lease"),
    [("/queue/next", False), ("/queue/img-a/heartbeat", True), ("/queue/img-a/release", True)],
)
def test_a_persons_token_may_not_name_someone_else_in_the_body(
    api: TestClient,
    people: dict[str, dict[str, str]],
    items: dict[str, int],
    store: Store,
    url: str,
    needs_lease: bool,
) -> None:
    if needs_lease:
        assert api.post("/queue/next", headers=people["ann"]).json()["item_id"] == "img-a"
    refused = api.post(url, json={"annotator": "ben"}, headers=people["ann"])
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "'ann' cannot act as 'ben': a token acts for its own person"
    )
    assert store.lease_of("img-a").annotator == ("ann" if needs_lease else None)
    # naming oneself is fine
    assert api.post(url, json={"annotator": "ann"}, headers=people["ann"]).status_code == 200


# -- someone else's lease: 409 -------------------------------------------------------


def test_feedback_on_an_item_leased_to_someone_else_is_409(
    api: TestClient, people: dict[str, dict[str, str]], items: dict[str, int], store: Store
) -> None:
    assert api.post("/queue/next", headers=people["ann"]).json()["item_id"] == "img-a"
    lease = store.lease_of("img-a")
    for body in (
        {"client_key": "b-1", "item_id": "img-a", "action": "accept"},
        {
            "client_key": "b-2",
            "item_id": "img-a",
            "action": "reject",
            "suggestion_id": items["img-a"],
        },
        {"client_key": "b-3", "item_id": "img-a", "action": "skip"},
    ):
        response = api.post("/feedback", json=body, headers=people["ben"])
        assert response.status_code == 409, response.text
        detail = response.json()["detail"]
        assert f"item 'img-a' is leased to 'ann' until {_until(lease.expires_at)}" in detail
        assert "'ben' cannot act on it" in detail
    assert store.feedback_for("img-a") == []
    assert store.get_suggestion(items["img-a"]).status == "pending"
    assert store.lease_of("img-a").annotator == "ann"  # ben's skip released nothing
    # the holder may decide
    mine = {
        "client_key": "a-1",
        "item_id": "img-a",
        "action": "reject",
        "suggestion_id": items["img-a"],
    }
    assert api.post("/feedback", json=mine, headers=people["ann"]).status_code == 201


def test_a_reviewer_overrules_a_lease(
    api: TestClient, people: dict[str, dict[str, str]], items: dict[str, int], store: Store
) -> None:
    assert api.post("/queue/next", headers=people["ann"]).json()["item_id"] == "img-a"
    body = {
        "client_key": "r-1",
        "item_id": "img-a",
        "action": "accept",
        "suggestion_id": items["img-a"],
    }
    response = api.post("/feedback", json=body, headers=people["rita"])
    assert response.status_code == 201, response.text
    assert response.json()["annotator"] == "rita"
    assert [r.feedback.annotator for r in store.feedback_for("img-a")] == ["rita"]
    assert store.get_suggestion(items["img-a"]).status == "accepted"
    # the service token acts as admin: it overrules too
    service = {**SERVICE, "X-Annotator": "gateway-user"}
    body = {"client_key": "g-1", "item_id": "img-a", "action": "accept"}
    assert api.post("/feedback", json=body, headers=service).status_code == 201


def test_an_item_nobody_holds_may_be_judged(
    api: TestClient, people: dict[str, dict[str, str]], items: dict[str, int], store: Store
) -> None:
    body = {"client_key": "b-1", "item_id": "img-c", "action": "accept"}
    assert api.post("/feedback", json=body, headers=people["ben"]).status_code == 201
    # an expired lease holds nothing either
    expired = store.lease_next("ann", 5.0, QueueFilter(), time.time() - 3600)
    assert expired is not None and expired.item_id == "img-a"
    late = {"client_key": "b-2", "item_id": "img-a", "action": "accept"}
    assert api.post("/feedback", json=late, headers=people["ben"]).status_code == 201
    assert [r.feedback.annotator for r in store.feedback_for("img-a")] == ["ben"]


# -- click-to-segment on someone else's lease ----------------------------------------


@pytest.fixture
def segmenting(
    settings: Settings, store: Store, tiny_sam: SamSegmenter, tmp_path: Path
) -> Iterator[tuple[TestClient, str]]:
    """The app with the tiny SAM, and one ingested, scored image."""
    tiny_sam.cache.clear()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    ingest(store, str(tmp_path / "a.png"), [tmp_path])
    item_id = store.list_items()[0].item_id
    _save_prediction(store, item_id, 0.5)
    app = create_app(settings, store, InteractiveSegmenter(settings, build=lambda: tiny_sam))
    with TestClient(app) as client:
        yield client, item_id


def test_segmenting_an_item_leased_to_someone_else_is_409(
    segmenting: tuple[TestClient, str], people: dict[str, dict[str, str]], store: Store
) -> None:
    client, item_id = segmenting
    click = {"item_id": item_id, "box_xyxy": [10, 10, 50, 40]}
    assert client.post("/interactive/segment", json=click, headers=people["ben"]).status_code == 200
    assert client.post("/queue/next", headers=people["ann"]).json()["item_id"] == item_id
    lease = store.lease_of(item_id)
    refused = client.post("/interactive/segment", json=click, headers=people["ben"])
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert f"is leased to 'ann' until {_until(lease.expires_at)}" in detail
    assert "'ben' cannot act on it" in detail
    for who in ("ann", "rita"):
        response = client.post("/interactive/segment", json=click, headers=people[who])
        assert response.status_code == 200, (who, response.text)
        assert response.json()["masks"]
    assert client.post("/interactive/segment", json=click, headers=SERVICE).status_code == 200
