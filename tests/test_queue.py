from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine import queue
from engine.store import NotFoundError, Store
from engine.types import Feedback, Item, Prediction


def _scored_items(store: Store, scores: list[float]) -> None:
    items = [Item(f"item-{i:03d}", "image", uri=f"/x/{i}.jpg") for i in range(len(scores))]
    store.add_items(items, [None] * len(items))
    predictions = [Prediction(i.item_id, "m", "v1", (), np.zeros((0, 0))) for i in items]
    store.save_predictions(predictions, scores)


def test_next_returns_highest_score_and_never_the_same_item_twice(store: Store) -> None:
    _scored_items(store, [0.1, 0.9, 0.5])
    first = queue.next_item(store, "alice", lease_seconds=60)
    second = queue.next_item(store, "bob", lease_seconds=60)
    assert first is not None and second is not None
    assert (first.item_id, second.item_id) == ("item-001", "item-002")
    assert queue.next_item(store, "alice", lease_seconds=60) == first  # still held


def test_expired_leases_return_and_heartbeat_extends(store: Store) -> None:
    _scored_items(store, [0.7])
    lease = queue.next_item(store, "alice", lease_seconds=10, now=1000.0)
    assert lease is not None
    assert queue.next_item(store, "bob", lease_seconds=10, now=1005.0) is None
    extended = queue.heartbeat(store, lease.item_id, "alice", lease_seconds=10, now=1008.0)
    assert extended.expires_at == pytest.approx(1018.0)
    assert queue.next_item(store, "bob", lease_seconds=10, now=1015.0) is None
    stolen = queue.next_item(store, "bob", lease_seconds=10, now=1019.0)
    assert stolen is not None and stolen.annotator == "bob"
    with pytest.raises(NotFoundError):
        queue.heartbeat(store, lease.item_id, "alice", lease_seconds=10, now=1020.0)


def test_item_feedback_releases_and_labels(store: Store) -> None:
    _scored_items(store, [0.9, 0.2])
    lease = queue.next_item(store, "alice", lease_seconds=60)
    assert lease is not None
    store.record_feedback(Feedback(lease.item_id, "accept", "k1", annotator="alice"))
    following = queue.next_item(store, "alice", lease_seconds=60)
    assert following is not None and following.item_id == "item-001"
    store.record_feedback(Feedback(following.item_id, "skip", "k2", annotator="alice"))
    again = queue.next_item(store, "bob", lease_seconds=60)
    assert again is not None and again.item_id == "item-001"  # skipped items come back


def test_concurrent_annotators_never_share_an_item(store: Store) -> None:
    _scored_items(store, list(np.linspace(0.0, 1.0, 40)))

    def claim(annotator: str) -> str | None:
        lease = queue.next_item(store, annotator, lease_seconds=60)
        return None if lease is None else lease.item_id

    with ThreadPoolExecutor(max_workers=16) as pool:
        claimed = list(pool.map(claim, [f"annotator-{i}" for i in range(48)]))
    taken = [c for c in claimed if c is not None]
    assert len(taken) == 40
    assert len(set(taken)) == 40
