"""The queue against a real PostgreSQL server started by the test (``pgserver``).

``pgserver`` (PyPI) ships self-contained PostgreSQL binaries; the session
fixture (``postgres_server``, ``pg_store`` in conftest) initialises a cluster in a
temporary folder, listens on a Unix socket there and stops it at the end. Each test
gets a fresh database. The tests fail, with the reason, when the server cannot be
started here.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from test_queue import claim_until_empty, hold_one_each, run_in_processes, scored_items

from engine.review import queue, routing
from engine.store import Store
from engine.types import Feedback

pytestmark = [
    pytest.mark.postgres,
    # pgserver asks platformdirs for a runtime dir; CI has no XDG_RUNTIME_DIR (harmless).
    pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR"),
]

def test_postgres_serves_in_score_order_with_filters(pg_store: Store) -> None:
    scored_items(pg_store, [0.9, 0.8, 0.3, 0.4], labels=["cat", "dog", "cat", "cat"])
    cat = queue.next_item(pg_store, "a", lease_seconds=60, label="cat", label_threshold=0.5)
    assert cat is not None and cat.item_id == "item-003"
    best = queue.next_item(pg_store, "b", lease_seconds=60)
    assert best is not None and best.item_id == "item-000"
    assert queue.next_item(pg_store, "a", lease_seconds=60, label="cat", label_threshold=0.5) == cat
    assert queue.rescore(pg_store, ["item-002", "item-001", "nope"], [0.95, 0.1, 0.2]) == 2
    following = queue.next_item(pg_store, "c", lease_seconds=60)
    assert following is not None and following.item_id == "item-002"


def test_postgres_expired_lease_and_skip(pg_store: Store) -> None:
    scored_items(pg_store, [0.7, 0.6])
    lease = queue.next_item(pg_store, "alice", lease_seconds=10, now=1000.0)
    assert lease is not None and lease.item_id == "item-000"
    other = queue.next_item(pg_store, "bob", lease_seconds=10, now=1005.0)
    assert other is not None and other.item_id == "item-001"
    stolen = queue.next_item(pg_store, "carol", lease_seconds=10, now=1011.0)
    assert stolen is not None and stolen.item_id == "item-000"
    skip = pg_store.record_feedback(Feedback("item-000", "skip", "s1", annotator="carol"))
    assert queue.after_feedback(pg_store, skip) == "lowered"
    assert queue.next_item(pg_store, "dan", lease_seconds=10, now=1012.0) is not None


def test_postgres_threads_never_share_an_item(pg_store: Store) -> None:
    scored_items(pg_store, list(np.linspace(0.0, 1.0, 40)))
    held = hold_one_each(pg_store.url, [f"annotator-{i}" for i in range(48)])
    assert len(held) == 40 and len(set(held)) == 40


def test_postgres_processes_and_threads_never_share_an_item(pg_store: Store) -> None:
    ids = scored_items(pg_store, list(np.random.default_rng(1).random(300)))
    claims = run_in_processes(claim_until_empty, [(pg_store.url, f"p{p}", 8) for p in range(4)])
    counts = Counter(item_id for per_process in claims for item_id, _ in per_process)
    assert [item for item, n in counts.items() if n > 1] == []
    assert sorted(counts) == sorted(ids)


def test_postgres_routing_round_trip(pg_store: Store) -> None:
    scored_items(pg_store, [0.5, 0.5], labels=["cat", "dog"])  # suggestion scores 0.5 each
    config = routing.RoutingConfig(default_threshold=0.4, label_thresholds={"dog": None})
    result = routing.route_suggestions(pg_store, config)
    assert (result.suggestions, result.items) == (1, 1)
    lease = queue.next_item(pg_store, "a", lease_seconds=60)
    assert lease is not None and lease.item_id == "item-001"  # the cat item left the queue
    reverted = routing.revert_machine_labels(pg_store)
    assert (reverted.suggestions, reverted.items) == (1, 1)


def test_insert_if_new_counts_rows_on_postgresql(pg_store: Store) -> None:
    """``ingest`` printed "-1 new" on PostgreSQL: a many-row insert's rowcount is -1."""
    from engine.types import Item

    items = [Item(f"t{i}", "text", text=f"text {i}") for i in range(5)]
    assert pg_store.add_items(items[:3], [None] * 3) == 3
    assert pg_store.add_items(items, [None] * 5) == 2  # three were there already
    job = pg_store.create_job("prelabel", {})
    errors = [("t1", "bad"), ("t1", "bad"), ("t2", "bad")]
    assert pg_store.record_job_errors(job.job_id, errors) == 2
