"""Feedback (idempotency, edit validation) and the queue over HTTP, on a real store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from engine.store import Store
from engine.types import Box, Item, Prediction, Span, Suggestion

TEXT = "Grace Hopper met Alan Turing"


@pytest.fixture
def suggestion_ids(store: Store) -> dict[str, int]:
    """Two images and a text, each with one stored suggestion; returns item -> suggestion id."""
    items = [
        Item("img-a", "image", uri="/data/a.png"),
        Item("img-b", "image", uri="/data/b.png"),
        Item("txt", "text", text=TEXT),
    ]
    store.add_items(items, [None] * 3)
    predictions = [
        Prediction(
            item.item_id,
            "yolo11n",
            "yolo11n-v1",
            (Suggestion("cat", 0.6, Box(1, 1, 9, 9), "yolo11n", "yolo11n-v1"),),
            np.array([[0.6]], dtype=np.float32),
            ("cat",),
        )
        for item in items
    ]
    store.save_predictions(predictions, [0.9, 0.5, 0.1])
    return {item.item_id: store.suggestions_for(item.item_id)[0].suggestion_id for item in items}


def _post(client: TestClient, annotator: str = "alice", **body: Any) -> Any:
    return client.post("/feedback", json=body, headers={"X-Annotator": annotator})


# -- feedback -----------------------------------------------------------------


def test_feedback_is_recorded_once_per_client_key(
    client: TestClient, store: Store, suggestion_ids: dict[str, int]
) -> None:
    body: dict[str, Any] = {
        "client_key": "k-1",
        "item_id": "img-a",
        "action": "accept",
        "suggestion_id": suggestion_ids["img-a"],
    }
    first = _post(client, **body)
    assert first.status_code == 201
    assert first.json()["created"] is True
    assert first.json()["annotator"] == "alice"
    assert first.json()["model_version"] == "yolo11n-v1"  # taken from the suggestion
    retry = _post(client, **body)
    assert retry.status_code == 200
    assert retry.json()["created"] is False
    assert retry.json()["feedback_id"] == first.json()["feedback_id"]
    assert retry.json()["created_at"] == first.json()["created_at"]
    assert len(store.feedback_for("img-a")) == 1
    assert store.get_suggestion(suggestion_ids["img-a"]).status == "accepted"


def test_concurrent_retries_record_one_row(
    client: TestClient, store: Store, suggestion_ids: dict[str, int]
) -> None:
    body: dict[str, Any] = {
        "client_key": "k-race",
        "item_id": "img-b",
        "action": "reject",
        "suggestion_id": suggestion_ids["img-b"],
    }
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: _post(client, **body), range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["feedback_id"] for r in responses}) == 1
    assert len(store.feedback_for("img-b")) == 1


def test_annotator_defaults_to_anonymous(
    client: TestClient, suggestion_ids: dict[str, int]
) -> None:
    response = client.post(
        "/feedback", json={"client_key": "k", "item_id": "img-a", "action": "skip"}
    )
    assert response.status_code == 201
    assert response.json()["annotator"] == "anonymous"


def test_edit_with_a_corrected_box_and_span(
    client: TestClient, store: Store, suggestion_ids: dict[str, int]
) -> None:
    box = _post(
        client,
        client_key="e1",
        item_id="img-a",
        action="edit",
        suggestion_id=suggestion_ids["img-a"],
        region={"kind": "box", "box_xyxy": [2, 3, 30, 40]},
    )
    assert box.status_code == 201, box.text
    assert box.json()["region"] == {"kind": "box", "box_xyxy": [2.0, 3.0, 30.0, 40.0]}
    span = _post(
        client,
        client_key="e2",
        item_id="txt",
        action="edit",
        label="PER",
        region={"kind": "span", "start": 17, "end": 28, "text": "Alan Turing"},
    )
    assert span.status_code == 201, span.text
    stored = store.feedback_for("txt")[0].feedback
    assert (stored.label, stored.region) == ("PER", Span(17, 28, "Alan Turing"))
    assert store.get_suggestion(suggestion_ids["img-a"]).status == "edited"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"item_id": "img-a", "region": {"kind": "box", "box_xyxy": [-1, 0, 5, 5]}},
            "box x1 must be >= 0",
        ),
        ({"item_id": "img-a", "region": {"kind": "box", "box_xyxy": [9, 0, 5, 5]}}, "x1 <= x2"),
        (
            {"item_id": "img-a", "region": {"kind": "box", "box_xyxy": [0, 0, 5]}},
            "body.region.box.box_xyxy",
        ),
        (
            {"item_id": "txt", "region": {"kind": "span", "start": 20, "end": 40}},
            "span end 40 is past the end of the text (28)",
        ),
        (
            {"item_id": "txt", "region": {"kind": "span", "start": 0, "end": 5, "text": "Alan "}},
            "span text does not match",
        ),
        (
            {"item_id": "txt", "region": {"kind": "box", "box_xyxy": [0, 0, 5, 5]}},
            "a box region needs an image item",
        ),
        (
            {"item_id": "img-a", "region": {"kind": "span", "start": 0, "end": 5}},
            "a span region needs a text item",
        ),
        ({"item_id": "img-a", "region": {"kind": "circle"}}, "body.region"),
        ({"item_id": "img-a"}, "edit feedback needs a corrected region or label"),
        ({"item_id": "img-a", "label": "cat", "extra": 1}, "body.extra"),
    ],
    ids=[
        "negative",
        "x2<x1",
        "three-numbers",
        "span-past-end",
        "span-text",
        "box-on-text",
        "span-on-image",
        "unknown-kind",
        "nothing-edited",
        "unknown-field",
    ],
)
def test_bad_edits_are_422_naming_the_problem(
    client: TestClient,
    store: Store,
    suggestion_ids: dict[str, int],
    body: dict[str, Any],
    expected: str,
) -> None:
    response = _post(client, client_key="bad", action="edit", **body)
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]
    assert store.feedback_for(body["item_id"]) == []


def test_suggestion_of_another_item_is_422(
    client: TestClient, store: Store, suggestion_ids: dict[str, int]
) -> None:
    response = _post(
        client,
        client_key="x",
        item_id="img-a",
        action="accept",
        suggestion_id=suggestion_ids["img-b"],
    )
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"suggestion {suggestion_ids['img-b']} belongs to item 'img-b', not 'img-a'"
    )
    assert store.get_suggestion(suggestion_ids["img-b"]).status == "pending"


def test_unknown_item_or_suggestion_is_404(
    client: TestClient, suggestion_ids: dict[str, int]
) -> None:
    missing_item = _post(client, client_key="m1", item_id="nope", action="accept")
    assert missing_item.status_code == 404
    assert missing_item.json()["detail"] == "item 'nope' not found"
    missing_suggestion = _post(
        client, client_key="m2", item_id="img-a", action="accept", suggestion_id=999_999
    )
    assert missing_suggestion.status_code == 404
    assert missing_suggestion.json()["detail"] == "suggestion 999999 not found"


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/feedback", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("invalid request: body")


# -- queue --------------------------------------------------------------------


def _next(client: TestClient, header: str, **body: Any) -> Any:
    return client.post("/queue/next", json=body or None, headers={"X-Annotator": header})


def test_two_annotators_never_get_the_same_item(
    client: TestClient, suggestion_ids: dict[str, int]
) -> None:
    alice = _next(client, "alice")
    bob = _next(client, "bob")
    assert (alice.status_code, bob.status_code) == (200, 200)
    assert alice.json()["item_id"] == "img-a" and alice.json()["score"] == pytest.approx(0.9)
    assert bob.json()["item_id"] == "img-b"
    assert alice.json()["item"]["image_url"] == "/items/img-a/image"
    expires = datetime.fromisoformat(alice.json()["lease_expires_at"])
    assert expires.tzinfo is not None
    assert _next(client, "alice").json()["item_id"] == "img-a"  # still held
    carol = _next(client, "ignored-header", annotator="carol")
    assert carol.json()["annotator"] == "carol" and carol.json()["item_id"] == "txt"
    assert _next(client, "dave").status_code == 204


def test_many_concurrent_annotators_get_distinct_items(client: TestClient, store: Store) -> None:
    items = [Item(f"q-{i:02d}", "text", text="x") for i in range(12)]
    store.add_items(items, [None] * len(items))
    rng = np.random.default_rng(0)
    scores = rng.random(len(items)).tolist()
    store.save_predictions(
        [Prediction(i.item_id, "m", "v", (), np.zeros((0, 0), np.float32)) for i in items], scores
    )
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda n: _next(client, f"annotator-{n}"), range(12)))
    assert all(r.status_code == 200 for r in responses)
    assert len({r.json()["item_id"] for r in responses}) == 12
    assert _next(client, "late").status_code == 204


def test_heartbeat_and_release(client: TestClient, suggestion_ids: dict[str, int]) -> None:
    lease = _next(client, "alice").json()
    item_id = lease["item_id"]
    beat = client.post(f"/queue/{item_id}/heartbeat", headers={"X-Annotator": "alice"})
    assert beat.status_code == 200
    assert beat.json()["lease_expires_at"] >= lease["lease_expires_at"]
    stranger = client.post(f"/queue/{item_id}/heartbeat", json={"annotator": "bob"})
    assert stranger.status_code == 409
    assert "'bob' holds no live lease on item 'img-a'" in stranger.json()["detail"]
    not_mine = client.post(f"/queue/{item_id}/release", headers={"X-Annotator": "bob"})
    assert not_mine.json() == {"item_id": item_id, "released": False}
    assert _next(client, "bob").json()["item_id"] == "img-b"  # img-a is still alice's
    released = client.post(f"/queue/{item_id}/release", headers={"X-Annotator": "alice"})
    assert released.json() == {"item_id": item_id, "released": True}
    assert _next(client, "carol").json()["item_id"] == item_id
    assert client.post("/queue/nope/heartbeat").status_code == 404
    assert client.post("/queue/nope/release").status_code == 404


def test_item_feedback_moves_the_queue_on(
    client: TestClient, suggestion_ids: dict[str, int]
) -> None:
    item_id = _next(client, "alice").json()["item_id"]
    done = _post(client, client_key="done-1", item_id=item_id, action="accept")
    assert done.status_code == 201
    assert _next(client, "alice").json()["item_id"] != item_id
