"""A lease's rank and the queue's progress (``Store.queue_rank`` / ``queue_counts`` /
``count_decisions``, ``GET /queue/progress``), on a real store over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from engine.config import Settings
from engine.review.people import add_person
from engine.serving.app import create_app
from engine.store import Store
from engine.types import Feedback, Item, Prediction

# Serving order: score desc, then item_id: a (0.9), b, c (0.5 each), d (0.3); u is unscored,
# z is labeled already (0.95, but out of the queue).
SCORES = {"a": 0.9, "c": 0.5, "b": 0.5, "d": 0.3, "z": 0.95}


@pytest.fixture
def queue(store: Store) -> None:
    ids = [*SCORES, "u"]
    store.add_items([Item(i, "text", text=f"text {i}") for i in ids], [None] * len(ids))
    store.save_predictions(
        [Prediction(i, "m", "v1", (), np.zeros((0, 0), np.float32)) for i in SCORES],
        list(SCORES.values()),
    )
    store.record_feedback(Feedback("z", "accept", "z-done", annotator="someone"))


@pytest.fixture
def people(store: Store) -> dict[str, dict[str, str]]:
    return {
        name: {"Authorization": f"Bearer {add_person(store, name, 'annotator')[1]}"}
        for name in ("ann", "ben", "cy", "dee")
    }


@pytest.fixture
def api(settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store)) as client:
        yield client


def test_each_lease_says_its_rank(
    api: TestClient, people: dict[str, dict[str, str]], store: Store, queue: None
) -> None:
    got = {}
    for name in ("ann", "ben", "cy"):
        lease = api.post("/queue/next", headers=people[name]).json()
        got[name] = (lease["item_id"], lease["rank"], lease["score"])
    # leased items still count as ahead: the rank says where the item stands in the queue
    assert got == {"ann": ("a", 1, 0.9), "ben": ("b", 2, 0.5), "cy": ("c", 3, 0.5)}
    assert api.post("/queue/next", headers=people["ann"]).json()["rank"] == 1  # same lease
    done = {"client_key": "a-done", "item_id": "a", "action": "accept"}
    assert api.post("/feedback", json=done, headers=people["ann"]).status_code == 201
    dee = api.post("/queue/next", headers=people["dee"]).json()
    assert (dee["item_id"], dee["rank"]) == ("d", 3)  # b and c ahead; a is labeled now
    # with a labeled, the queue is b, c, d (u has no score, z is labeled)
    ranks = {i: store.queue_rank(i, store.lease_of(i).score) for i in ("b", "c", "d", "u")}
    assert ranks == {"b": 1, "c": 2, "d": 3, "u": None}


def test_queue_rank_of_an_unscored_item_is_none(store: Store, queue: None) -> None:
    assert store.queue_rank("u", None) is None
    assert store.queue_rank("a", 0.9) == 1
    assert store.queue_rank("c", 0.5) == 3  # b wins the tie on item_id
    assert store.queue_rank("new", 2.0) == 1  # any score: ahead of everything


def test_progress_counts_labeled_and_remaining(
    api: TestClient, people: dict[str, dict[str, str]], store: Store, queue: None
) -> None:
    start = api.get("/queue/progress", headers=people["ann"]).json()
    assert start == {"labeled": 1, "remaining": 5, "mine": 0, "per_hour": None}
    assert store.queue_counts() == (1, 5)
    for key, body in {
        "k1": {"item_id": "a", "action": "accept"},
        "k2": {"item_id": "b", "action": "skip"},  # a skip is a decision, not a label
        "k3": {"item_id": "u", "action": "reject"},
    }.items():
        response = api.post("/feedback", json={"client_key": key, **body}, headers=people["ann"])
        assert response.status_code == 201, response.text
    again = {"client_key": "k1", "item_id": "a", "action": "accept"}  # a replay counts once
    assert api.post("/feedback", json=again, headers=people["ann"]).status_code == 200
    ben = {"client_key": "b1", "item_id": "c", "action": "accept"}
    assert api.post("/feedback", json=ben, headers=people["ben"]).status_code == 201
    ann = api.get("/queue/progress", headers=people["ann"]).json()
    assert ann == {"labeled": 4, "remaining": 2, "mine": 3, "per_hour": None}
    assert api.get("/queue/progress", headers=people["ben"]).json()["mine"] == 1
    assert api.get("/queue/progress", headers=people["dee"]).json()["mine"] == 0
    assert store.count_decisions("ann") == 3


def test_progress_since_counts_recent_decisions_and_the_pace(
    api: TestClient, people: dict[str, dict[str, str]], store: Store, queue: None
) -> None:
    def decide(key: str, item_id: str) -> None:
        body = {"client_key": key, "item_id": item_id, "action": "accept"}
        assert api.post("/feedback", json=body, headers=people["ann"]).status_code == 201

    decide("k1", "a")
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    decide("k2", "b")
    decide("k3", "c")

    def progress(since: datetime) -> dict[str, object]:
        response = api.get(
            "/queue/progress", params={"since": since.isoformat()}, headers=people["ann"]
        )
        assert response.status_code == 200, response.text
        out: dict[str, object] = response.json()
        return out

    two_hours = progress(datetime.now(UTC) - timedelta(hours=2))
    assert two_hours["mine"] == 3
    assert two_hours["per_hour"] == pytest.approx(1.5, rel=1e-3)
    recent = progress(between)
    assert recent["mine"] == 2
    # under a minute: the pace is counted over one minute, not a fraction of a second
    assert recent["per_hour"] == pytest.approx(2 * 60.0, rel=1e-2)
    assert progress(datetime.now(UTC) + timedelta(hours=1))["mine"] == 0
    naive = progress((datetime.now(UTC) - timedelta(hours=4)).replace(tzinfo=None))  # read as UTC
    assert naive["mine"] == 3 and naive["per_hour"] == pytest.approx(0.75, rel=1e-3)
    assert store.count_decisions("ann", since=between) == 2
    bad = api.get("/queue/progress", params={"since": "yesterday"}, headers=people["ann"])
    assert bad.status_code == 422 and "since" in bad.json()["detail"]
