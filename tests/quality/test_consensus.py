"""Consensus and gold through the real queue (SQLite here, PostgreSQL in the _postgres twin)."""

from __future__ import annotations

from collections import Counter

import pytest
from quality_data import BOX, boxed_items, decide, label_until_empty

from engine.quality import consensus
from engine.review import queue
from engine.review.decisions import record_decision
from engine.store import Store
from engine.types import Feedback


def _lease(
    store: Store,
    person: str,
    *,
    gold_rate: float = 0.0,
    lease_seconds: float = 60,
    now: float | None = None,
) -> str | None:
    lease = queue.next_item(
        store, person, lease_seconds=lease_seconds, gold_rate=gold_rate, now=now
    )
    return None if lease is None else lease.item_id


def test_an_overlap_item_goes_to_k_distinct_people_then_resolves(store: Store) -> None:
    ids = boxed_items(store, [0.9, 0.5, 0.4])
    assert consensus.choose_overlap(store, k=3, item_ids=[ids[0]]) == [ids[0]]
    assert [_lease(store, p) for p in ("a", "b", "c", "d")] == [ids[0], ids[0], ids[0], ids[1]]
    assert _lease(store, "a") == ids[0]  # asking again returns the held item
    for person in ("a", "b"):
        decide(store, ids[0], person)
    assert store.quality_item(ids[0]).state == "open"  # type: ignore[union-attr]
    assert _lease(store, "a") == ids[2]  # finished: never handed to the same person twice
    decide(store, ids[0], "c")
    final = store.quality_item(ids[0])
    assert final is not None and (final.state, final.resolution) == ("final", "consensus")
    assert final.final_labels == ({"label": "cat", "region": BOX.to_dict()},)
    labels = store.item_labels(store.get_item(ids[0]))
    assert [(lab.label, lab.source) for lab in labels.labels] == [("cat", "consensus")]


def test_decisions_on_an_overlap_item_stay_private(store: Store) -> None:
    ids = boxed_items(store, [0.9])
    consensus.choose_overlap(store, k=2, item_ids=ids)
    assert _lease(store, "a") == ids[0]
    sid = store.suggestions_for(ids[0])[0].suggestion_id
    reject = Feedback(ids[0], "reject", "a:s", suggestion_id=sid, annotator="a")
    record_decision(store, reject, respect_leases=True)
    assert store.suggestions_for(ids[0])[0].status == "pending"  # b cannot see a's reject
    assert store.item_labels(store.get_item(ids[0])).labels == ()  # nothing final yet
    assert store.person_labels(store.get_item(ids[0]), "a") == ()


def test_disagreement_goes_to_a_reviewer_who_picks(store: Store) -> None:
    ids = boxed_items(store, [0.9])
    consensus.choose_overlap(store, k=3, item_ids=ids)
    for person, action in (("a", "accept"), ("b", "accept"), ("c", "reject")):
        assert _lease(store, person) == ids[0]
        decide(store, ids[0], person, action)
    assert store.quality_item(ids[0]).state == "review"  # type: ignore[union-attr]
    assert store.item_labels(store.get_item(ids[0])).labels == ()  # not exported yet
    [case] = consensus.review_cases(store)
    assert set(case.majority) == {"a", "b"}
    assert [lab.label for lab in case.decisions["a"]] == ["cat"] and case.decisions["c"] == ()
    with pytest.raises(ValueError, match="did not label"):
        consensus.resolve_by_reviewer(store, ids[0], reviewer="r", pick="zed")
    done = consensus.resolve_by_reviewer(store, ids[0], reviewer="r", pick="c")
    assert (done.state, done.resolution, done.resolved_by, done.final_labels) == (
        "final",
        "reviewer",
        "r",
        (),
    )
    with pytest.raises(consensus.QualityStateError, match="not waiting"):
        consensus.resolve_by_reviewer(store, ids[0], reviewer="r", pick="a")


def test_a_skip_or_an_expired_lease_gives_the_place_back(store: Store) -> None:
    ids = boxed_items(store, [0.9, 0.1])
    consensus.choose_overlap(store, k=2, item_ids=[ids[0]])
    assert _lease(store, "a", lease_seconds=10, now=1000.0) == ids[0]
    assert _lease(store, "b", lease_seconds=10, now=1000.0) == ids[0]
    assert _lease(store, "c", lease_seconds=10, now=1001.0) == ids[1]
    decide(store, ids[0], "a", "skip")  # a gives the place back
    assert _lease(store, "d", lease_seconds=10, now=1002.0) == ids[0]
    # b's lease runs out: its place goes to the next person who asks
    assert _lease(store, "e", lease_seconds=10, now=1011.0) == ids[0]
    holders = sorted(a.annotator for a in store.assignments(item_id=ids[0]))
    assert holders == ["d", "e"]


def test_an_annotator_not_handed_a_quality_item_cannot_decide_on_it(store: Store) -> None:
    ids = boxed_items(store, [0.9])
    consensus.choose_overlap(store, k=2, item_ids=ids)
    with pytest.raises(consensus.NotAssignedError, match="not assigned"):
        decide(store, ids[0], "a")


def test_gold_is_served_once_to_each_person_and_scores_nobody_else(store: Store) -> None:
    ids = boxed_items(store, [0.9, 0.2, 0.3])
    decide(store, ids[1], "r")  # a reviewer accepted it: its labels become gold
    gold = consensus.mark_gold(store, ids[1], labels=None, by="r")
    assert gold.final_labels == ({"label": "cat", "region": BOX.to_dict()},)
    with pytest.raises(consensus.QualityStateError, match="already"):
        consensus.mark_gold(store, ids[1], labels=None, by="r")
    assert _lease(store, "a", gold_rate=1.0) == ids[1]  # gold first, although scored low
    decide(store, ids[1], "a")
    assert _lease(store, "a", gold_rate=1.0) == ids[0]  # once per person
    assert _lease(store, "b", gold_rate=0.0) == ids[2]  # never without gold_rate: 0.3 > gold
    assert _lease(store, "b", gold_rate=1.0) == ids[2]  # b still holds that one
    with pytest.raises(ValueError, match="no reviewed labels"):
        consensus.mark_gold(store, ids[2], labels=None, by="r")


def test_choose_overlap_draws_a_fraction_of_the_unlabeled_backlog(store: Store) -> None:
    ids = boxed_items(store, [0.5] * 40)
    chosen = consensus.choose_overlap(store, k=3, fraction=0.1, seed=7)
    assert len(chosen) == 4 and set(chosen) <= set(ids)
    assert consensus.choose_overlap(store, k=3, fraction=0.1, seed=7) != chosen  # others now
    with pytest.raises(ValueError, match="k >= 2"):
        consensus.choose_overlap(store, k=1, fraction=0.1)


def check_concurrent_consensus(store: Store) -> None:
    """12 people in threads over 6 overlap items (k = 3) and 14 single ones."""
    ids = boxed_items(store, [0.5 + i / 100 for i in range(20)])
    overlap = consensus.choose_overlap(store, k=3, item_ids=ids[::3][:6])
    claims = label_until_empty(store.url, [f"p{i}" for i in range(12)])
    per_item = Counter(item for item, _ in claims)
    assert len(set(claims)) == len(claims)  # never one item twice to one person
    assert {i: per_item[i] for i in overlap} == {i: 3 for i in overlap}
    assert {i: per_item[i] for i in ids if i not in overlap} == {
        i: 1 for i in ids if i not in overlap
    }
    assert {q.state for q in store.quality_items(role="overlap")} == {"final"}


def test_concurrent_people_on_sqlite(store: Store) -> None:
    check_concurrent_consensus(store)
