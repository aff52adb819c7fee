from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy import update

from engine.review import queue
from engine.store import NotFoundError, Store
from engine.store import queue as store_queue
from engine.store import schema as t
from engine.types import Box, Feedback, Item, Prediction, Suggestion


def scored_items(
    store: Store, scores: list[float], *, labels: list[str] | None = None, version: str = "v1"
) -> list[str]:
    """Items ``item-000...`` with one prediction each (one suggestion when ``labels``)."""
    items = [Item(f"item-{i:03d}", "image", uri=f"/x/{i}.jpg") for i in range(len(scores))]
    store.add_items(items, [None] * len(items))
    predictions = []
    for i, item in enumerate(items):
        suggestions: tuple[Suggestion, ...] = ()
        if labels is not None:
            suggestions = (Suggestion(labels[i], 1 - scores[i], Box(0, 0, 5, 5), "m", version),)
        predictions.append(
            Prediction(
                item.item_id, "m", version, suggestions, np.zeros((len(suggestions), 0), np.float32)
            )
        )
    store.save_predictions(predictions, scores)
    return [item.item_id for item in items]


def claim_until_empty(url: str, worker: str, n_threads: int) -> list[tuple[str, str]]:
    """Threads of one process lease and label items until the queue is empty.

    Returns ``(item_id, annotator)`` for every lease handed out. Items are
    labeled through the real feedback path, so an item leased twice shows up
    twice in the result.
    """
    store = Store(url)

    def run(annotator: str) -> list[tuple[str, str]]:
        got = []
        while (lease := queue.next_item(store, annotator, lease_seconds=300)) is not None:
            got.append((lease.item_id, annotator))
            key = f"{annotator}:{lease.item_id}"
            store.record_feedback(Feedback(lease.item_id, "accept", key, annotator=annotator))
        return got

    try:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            names = [f"{worker}-t{i}" for i in range(n_threads)]
            return [claim for claims in pool.map(run, names) for claim in claims]
    finally:
        store.close()


def hold_one_each(url: str, annotators: list[str]) -> list[str]:
    """Each annotator (one thread each) leases one item and keeps it."""
    store = Store(url)

    def run(annotator: str) -> str | None:
        lease = queue.next_item(store, annotator, lease_seconds=300)
        return None if lease is None else lease.item_id

    try:
        with ThreadPoolExecutor(max_workers=len(annotators)) as pool:
            return [item for item in pool.map(run, annotators) if item is not None]
    finally:
        store.close()


def run_in_processes(fn, args_list: list[tuple]) -> list:  # type: ignore[no-untyped-def, type-arg]
    with multiprocessing.get_context("spawn").Pool(len(args_list)) as pool:
        return pool.starmap(fn, args_list)


def test_next_returns_highest_score_and_never_the_same_item_twice(store: Store) -> None:
    scored_items(store, [0.1, 0.9, 0.5])
    first = queue.next_item(store, "alice", lease_seconds=60)
    second = queue.next_item(store, "bob", lease_seconds=60)
    assert first is not None and second is not None
    assert (first.item_id, second.item_id) == ("item-001", "item-002")
    assert queue.next_item(store, "alice", lease_seconds=60) == first  # still held


def test_ties_are_served_in_item_id_order(store: Store) -> None:
    scored_items(store, [0.5, 0.5, 0.5])
    got = [queue.next_item(store, f"a{i}", lease_seconds=60) for i in range(3)]
    assert [lease.item_id for lease in got if lease] == ["item-000", "item-001", "item-002"]


def test_expired_leases_return_and_heartbeat_extends(store: Store) -> None:
    scored_items(store, [0.7])
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
    assert queue.release(store, lease.item_id, "alice") is False
    assert queue.release(store, lease.item_id, "bob") is True


def test_item_feedback_releases_and_labels(store: Store) -> None:
    scored_items(store, [0.9, 0.2])
    lease = queue.next_item(store, "alice", lease_seconds=60)
    assert lease is not None
    store.record_feedback(Feedback(lease.item_id, "accept", "k1", annotator="alice"))
    following = queue.next_item(store, "alice", lease_seconds=60)
    assert following is not None and following.item_id == "item-001"
    store.record_feedback(Feedback(following.item_id, "skip", "k2", annotator="alice"))
    again = queue.next_item(store, "bob", lease_seconds=60)
    assert again is not None and again.item_id == "item-001"  # skipped items come back


def test_label_filter_needs_a_matching_suggestion_above_threshold(store: Store) -> None:
    # suggestion scores are 1 - item score: cat 0.1, dog 0.2, cat 0.7, cat 0.6
    scored_items(store, [0.9, 0.8, 0.3, 0.4], labels=["cat", "dog", "cat", "cat"])
    lease = queue.next_item(store, "a", lease_seconds=60, label="cat", label_threshold=0.5)
    assert lease is not None and lease.item_id == "item-003"  # best-scored cat >= 0.5
    lease = queue.next_item(store, "b", lease_seconds=60, label="cat", label_threshold=0.5)
    assert lease is not None and lease.item_id == "item-002"
    assert queue.next_item(store, "c", lease_seconds=60, label="cat", label_threshold=0.5) is None
    dog = queue.next_item(store, "c", lease_seconds=60, label="dog")
    assert dog is not None and dog.item_id == "item-001"
    assert queue.next_item(store, "d", lease_seconds=60, label="bird") is None


def test_rejected_suggestions_do_not_match_the_label_filter(store: Store) -> None:
    scored_items(store, [0.5], labels=["cat"])
    record = store.suggestions_for("item-000")[0]
    store.record_feedback(Feedback("item-000", "reject", "r1", suggestion_id=record.suggestion_id))
    assert queue.next_item(store, "a", lease_seconds=60, label="cat") is None
    assert queue.next_item(store, "a", lease_seconds=60) is not None


def test_job_and_model_version_filters(store: Store) -> None:
    items = [Item(f"i{i}", "image", uri=f"/x/{i}.jpg") for i in range(3)]
    store.add_items(items, [None] * 3)
    empty = np.zeros((0, 0), np.float32)
    store.save_predictions([Prediction("i0", "m", "v1", (), empty)], [0.9], job_id="job-a")
    store.save_predictions([Prediction("i1", "m", "v2", (), empty)], [0.8], job_id="job-b")
    store.save_predictions([Prediction("i2", "m", "v2", (), empty)], [0.7], job_id="job-a")
    by_job = queue.next_item(store, "a", lease_seconds=60, job_id="job-b")
    assert by_job is not None and by_job.item_id == "i1"
    by_version = queue.next_item(store, "b", lease_seconds=60, model_version="v2")
    assert by_version is not None and by_version.item_id == "i2"
    both = queue.next_item(store, "c", lease_seconds=60, job_id="job-a", model_version="v2")
    assert both is None  # i2 is leased by b
    assert queue.next_item(store, "c", lease_seconds=60, job_id="nope") is None


def test_held_lease_is_returned_only_when_it_matches_the_filters(store: Store) -> None:
    scored_items(store, [0.9, 0.3], labels=["dog", "cat"])
    first = queue.next_item(store, "a", lease_seconds=60)
    assert first is not None and first.item_id == "item-000"
    cat = queue.next_item(store, "a", lease_seconds=60, label="cat")
    assert cat is not None and cat.item_id == "item-001"
    assert queue.next_item(store, "a", lease_seconds=60) == first  # both held; best first


def test_unscored_and_labeled_items_are_not_served(store: Store) -> None:
    store.add_items([Item("raw", "image", uri="/x/raw.jpg")], [None])
    assert queue.next_item(store, "a", lease_seconds=60) is None
    scored_items(store, [0.4])
    with store.engine.begin() as conn:
        conn.execute(update(t.items).where(t.items.c.item_id == "item-000").values(labeled=True))
    assert queue.next_item(store, "a", lease_seconds=60) is None


def test_rescore_reorders_the_queue(store: Store) -> None:
    ids = scored_items(store, [0.9, 0.1, 0.5])
    assert queue.rescore(store, [ids[1], ids[0], "missing"], [0.99, 0.2, 0.5]) == 2
    order = [queue.next_item(store, f"a{i}", lease_seconds=60) for i in range(3)]
    assert [lease.item_id for lease in order if lease] == [ids[1], ids[2], ids[0]]
    assert queue.rescore(store, [ids[2]], [0.3], model_version="v9") == 1
    assert queue.next_item(store, "z", lease_seconds=60, model_version="v9") is None  # held
    queue.release(store, ids[2], "a1")
    again = queue.next_item(store, "z", lease_seconds=60, model_version="v9")
    assert again is not None and again.item_id == ids[2] and again.score == pytest.approx(0.3)


def test_rescore_rejects_bad_input(store: Store) -> None:
    ids = scored_items(store, [0.5, 0.6])
    with pytest.raises(ValueError, match="must align"):
        queue.rescore(store, ids, [0.1])
    with pytest.raises(ValueError, match="not finite"):
        queue.rescore(store, ids, [0.1, float("nan")])
    with pytest.raises(ValueError, match="distinct"):
        queue.rescore(store, [ids[0], ids[0]], [0.1, 0.2])


def test_skip_lowers_the_score_once_per_client_key(store: Store) -> None:
    scored_items(store, [0.8, 0.6])
    lease = queue.next_item(store, "alice", lease_seconds=60)
    assert lease is not None and lease.item_id == "item-000"
    skip = Feedback("item-000", "skip", "s1", annotator="alice")
    assert queue.after_feedback(store, store.record_feedback(skip)) == "lowered"
    assert queue.after_feedback(store, store.record_feedback(skip)) == "none"  # replay
    following = queue.next_item(store, "alice", lease_seconds=60)
    assert following is not None and following.item_id == "item-001"  # 0.6 > 0.4
    last = queue.next_item(store, "bob", lease_seconds=60)
    assert last is not None and last.item_id == "item-000"
    assert last.score == pytest.approx(0.4)


def test_bad_arguments_are_value_errors(store: Store) -> None:
    scored_items(store, [0.5])
    with pytest.raises(ValueError, match="annotator"):
        queue.next_item(store, "", lease_seconds=60)
    with pytest.raises(ValueError, match="lease_seconds"):
        queue.next_item(store, "a", lease_seconds=0)
    with pytest.raises(ValueError, match="label_threshold"):
        queue.next_item(store, "a", lease_seconds=60, label="cat", label_threshold=1.5)
    with pytest.raises(ValueError, match="lease_seconds"):
        queue.heartbeat(store, "item-000", "a", lease_seconds=float("inf"))


def _plan(store: Store, statement: object, params: dict[str, object]) -> str:
    compiled = statement.compile(dialect=store.engine.dialect)  # type: ignore[attr-defined]
    values = compiled.construct_params(params)
    args = tuple(values[name] for name in compiled.positiontup)
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, args)
        return " | ".join(row[3] for row in rows)


def test_next_reads_the_partial_index_not_the_table(store: Store) -> None:
    params = {"now": 0.0, "f_version": "v1", "f_label": "cat", "f_label_threshold": 0.5}
    stmts = store_queue.statements(True, True, True)
    plan = _plan(store, stmts.candidate, {**params, "f_job": "job"})
    assert "USING INDEX ix_items_ready" in plan
    assert "TEMP B-TREE" not in plan  # no sort: served in index order
    assert "SCAN suggestions" not in plan and "SCAN predictions" not in plan
    claim_params = {**params, "f_job": "job", "b_annotator": "a", "b_expires_at": 1.0}
    claim = _plan(store, stmts.claim, claim_params)
    assert "USING INDEX ix_items_ready" in claim and "TEMP B-TREE" not in claim
    held = _plan(
        store, store_queue.statements(False, False, False).held, {"b_annotator": "a", "now": 0}
    )
    assert "USING INDEX ix_items_leased_by" in held


def test_concurrent_annotators_never_share_an_item(store: Store) -> None:
    scored_items(store, list(np.linspace(0.0, 1.0, 40)))
    held = hold_one_each(store.url, [f"annotator-{i}" for i in range(48)])
    assert len(held) == 40
    assert len(set(held)) == 40


def test_processes_and_threads_never_share_an_item(store: Store) -> None:
    n_items = 240
    ids = scored_items(store, list(np.random.default_rng(0).random(n_items)))
    claims = run_in_processes(claim_until_empty, [(store.url, f"p{p}", 6) for p in range(4)])
    flat = [claim for per_process in claims for claim in per_process]
    counts = Counter(item_id for item_id, _ in flat)
    assert [item for item, n in counts.items() if n > 1] == []
    assert sorted(counts) == sorted(ids)  # every item served exactly once
    assert len({annotator.split("-")[0] for _, annotator in flat}) == 4  # all processes served


def test_processes_holding_leases_split_the_items(store: Store) -> None:
    scored_items(store, list(np.linspace(0.0, 1.0, 30)))
    jobs = [(store.url, [f"p{p}-a{i}" for i in range(12)]) for p in range(3)]
    held = [item for per_process in run_in_processes(hold_one_each, jobs) for item in per_process]
    assert len(held) == 30 and len(set(held)) == 30
