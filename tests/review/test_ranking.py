"""Re-ranking the live queue from stored predictions under a policy (real SQLite store)."""

from __future__ import annotations

import numpy as np
import pytest
from ranking_data import box_prediction, served_order, store_predictions

from engine.review.ranking import current_policy, order_head, rank_backlog
from engine.sampling.policy import PolicyError, RankPolicy, policy_from
from engine.store import Store

# auto (max binary entropy) puts `near` (0.5 / 0.45) first; margin on the renormalised
# row puts `close` (0.9 / 0.85: 0.514 vs 0.486) first.
NEAR = [[0.5, 0.45]]
CLOSE = [[0.9, 0.85]]
SURE = [[0.99, 0.01]]


@pytest.fixture
def backlog(store: Store) -> Store:
    store_predictions(
        store,
        [
            box_prediction("near", NEAR),
            box_prediction("close", CLOSE),
            box_prediction("sure", SURE),
            box_prediction("empty", []),
        ],
    )
    return store


def test_policy_choice_reorders_the_backlog_without_a_model(backlog: Store) -> None:
    assert served_order(backlog, 3) == ["empty", "near", "close"]  # blind spot first
    report = rank_backlog(backlog, policy_from("margin,empty_score=0"))
    assert report.n_scored == 4
    assert served_order(backlog, 4) == ["close", "near", "sure", "empty"]
    assert current_policy(backlog) == RankPolicy(score="margin", empty_score=0.0)
    rank_backlog(backlog, RankPolicy())
    assert served_order(backlog, 2) == ["empty", "near"]
    assert current_policy(backlog) == RankPolicy()


def test_reductions_differ_on_several_boxes(store: Store) -> None:
    # one very uncertain box among sure ones vs two middling boxes
    store_predictions(
        store,
        [
            box_prediction("one-bad", [[0.5, 0.5], [0.99, 0.01], [0.99, 0.01], [0.99, 0.01]]),
            box_prediction("two-mid", [[0.8, 0.1], [0.8, 0.1]]),
        ],
    )
    rank_backlog(store, policy_from("auto,reduction=max"))
    assert served_order(store, 1) == ["one-bad"]
    rank_backlog(store, policy_from("auto,reduction=mean"))
    assert served_order(store, 1) == ["two-mid"]
    rank_backlog(store, policy_from("auto,reduction=sum"))
    scores = dict((i, s) for i, s, _ in store.top_items(limit=2))
    assert all(0.0 <= s <= 1.0 for s in scores.values())


def test_bald_reads_the_stored_test_time_passes_and_falls_back_without_them(
    store: Store,
) -> None:
    # Same base row; `shaky` disagrees across its 4 augmented passes, `steady` does not.
    shaky = np.array([[[0.9, 0.1]], [[0.1, 0.9]], [[0.9, 0.1]], [[0.2, 0.8]]], np.float32)
    steady = np.repeat(np.array([[[0.9, 0.1]]], np.float32), 4, axis=0)
    store_predictions(
        store,
        [
            box_prediction("shaky", [[0.9, 0.1]], signals={"tta_probs": shaky}),
            box_prediction("steady", [[0.9, 0.1]], signals={"tta_probs": steady}),
            box_prediction("no-passes", [[0.6, 0.4]]),
        ],
    )
    stored = store.stored_prediction("shaky")
    assert stored is not None
    np.testing.assert_allclose(stored.prediction.signals["tta_probs"], shaky, atol=1e-3)
    rank_backlog(store, policy_from("bald"))
    order = served_order(store, 3)
    assert order.index("shaky") < order.index("steady")
    scores = dict((i, s) for i, s, _ in store.top_items(limit=3))
    assert scores["steady"] == pytest.approx(0.0, abs=1e-6)
    assert scores["no-passes"] > 0.5  # no passes stored: the default rule, not zero


def _near_duplicates(n_groups: int, per_group: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_groups, 16))
    return [
        centers[g] + 0.01 * rng.normal(size=16) for g in range(n_groups) for _ in range(per_group)
    ]


def test_kcenter_head_spreads_near_duplicates(store: Store) -> None:
    """40 near-duplicates of one item and 10 distinct ones, all equally uncertain."""
    dups = _near_duplicates(1, 40)
    distinct = _near_duplicates(10, 1, seed=1)
    predictions = [
        box_prediction(f"dup-{i:02d}", NEAR, embedding=e) for i, e in enumerate(dups)
    ] + [box_prediction(f"z-photo-{i}", NEAR, embedding=e) for i, e in enumerate(distinct)]
    store_predictions(store, predictions)
    group = {p.item_id: ("dup" if p.item_id.startswith("dup") else p.item_id) for p in predictions}
    plain = served_order(store, 10)
    assert len({group[i] for i in plain}) < 8  # the duplicates crowd the top
    report = rank_backlog(store, policy_from("auto,diversity=kcenter,head=50,picks=20"))
    assert (report.n_head, report.n_head_embedded) == (50, 50)
    diverse = served_order(store, 10)
    assert len({group[i] for i in diverse}) >= 8
    hybrid = rank_backlog(store, policy_from("auto,diversity=hybrid,weight=0.5,head=50"))
    assert hybrid.n_head == 50
    assert len({group[i] for i in served_order(store, 10)}) >= 8
    rank_backlog(store, RankPolicy())  # back to plain: every score as stored, no bonus
    assert served_order(store, 10) == plain


def test_order_head_keeps_the_rest_of_the_queue_behind_it(store: Store) -> None:
    embeddings = _near_duplicates(5, 4)
    rows = [[0.5 + 0.02 * i, 0.1] for i in range(20)]
    store_predictions(
        store,
        [
            box_prediction(f"i{i:02d}", [row], embedding=e)
            for i, (row, e) in enumerate(zip(rows, embeddings, strict=True))
        ],
    )
    before = served_order(store, 20)
    policy = RankPolicy(diversity="kcenter", head=8, picks=8)
    n_head, _ = order_head(store, policy)
    after = served_order(store, 20)
    assert n_head == 8
    assert set(after[:8]) == set(before[:8]) and after[8:] == before[8:]
    assert after[0] == before[0]  # the most uncertain first


def test_power_sampler_is_seeded(backlog: Store) -> None:
    rank_backlog(backlog, policy_from("auto,sampler=power,beta=1,seed=3"))
    first = served_order(backlog, 4)
    rank_backlog(backlog, policy_from("auto,sampler=power,beta=1,seed=3"))
    assert served_order(backlog, 4) == first


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("score=nope", "'score'"),
        ("auto,head=0", "'head'"),
        ("auto,weight=2", "'weight'"),
        ("auto,colour=red", "'colour'"),
        ("auto,head=abc", "'head'"),
        ("auto,mean", "key=value"),
    ],
)
def test_bad_policies_name_the_field(text: str, field: str) -> None:
    with pytest.raises(PolicyError, match=field):
        policy_from(text)


@pytest.mark.slow
def test_the_same_ranking_on_postgres(pg_store: Store) -> None:
    """prediction_extras, the meta upsert and the paged joins on a real PostgreSQL."""
    shaky = np.array([[[0.9, 0.1]], [[0.1, 0.9]]], np.float32)
    dups = _near_duplicates(1, 6)
    store_predictions(
        pg_store,
        [box_prediction("near", NEAR, signals={"tta_probs": shaky}, embedding=dups[0])]
        + [box_prediction(f"dup-{i}", CLOSE, embedding=e) for i, e in enumerate(dups[1:])]
        + [box_prediction("far", SURE, embedding=_near_duplicates(1, 1, seed=5)[0])],
    )
    rank_backlog(pg_store, policy_from("margin"))
    assert served_order(pg_store, 1)[0].startswith("dup-")
    assert current_policy(pg_store) == RankPolicy(score="margin")
    rank_backlog(pg_store, policy_from("margin,diversity=kcenter,head=7,picks=3"))
    assert "far" in served_order(pg_store, 3)
    stored = pg_store.stored_prediction("near")
    assert stored is not None and stored.prediction.embedding is not None
    np.testing.assert_allclose(stored.prediction.signals["tta_probs"], shaky, atol=1e-3)
