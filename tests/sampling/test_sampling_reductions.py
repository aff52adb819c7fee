"""Per-item reductions over ragged groups and the task policies built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.sampling.policies import (
    detection_item_scores,
    detection_region_scores,
    mask_item_scores,
    sentence_scores,
)
from engine.sampling.reductions import REDUCTION_NAMES, Reduction, get_reduction, reduce_groups


def _naive(values: list[float], reduction: Reduction) -> float:
    """One group reduced with plain Python: the reference for the vectorised code."""
    if reduction.name == "max":
        return max(values)
    if reduction.name == "min":
        return min(values)
    if reduction.name == "sum":
        return math.fsum(values)
    if reduction.name == "mean":
        return math.fsum(values) / len(values)
    if reduction.name == "topk_mean":
        top = sorted(values, reverse=True)[: reduction.k]
        return math.fsum(top) / len(top)
    sign = 1.0 if reduction.name == "softmax" else -1.0
    weights = [math.exp(sign * v / reduction.temperature) for v in values]
    return math.fsum(w * v for w, v in zip(weights, values, strict=True)) / math.fsum(weights)


def _ragged(seed: int, n_items: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Random values with random groups (unsorted), about a quarter of the items empty.

    Odd seeds round values to one decimal so that groups contain ties.
    """
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 6, size=n_items) * (rng.random(n_items) > 0.25)
    groups = np.repeat(np.arange(n_items), counts)
    rng.shuffle(groups)
    values = rng.random(len(groups))
    return (np.round(values, 1) if seed % 2 else values), groups


ALL_REDUCTIONS = [
    Reduction("max"),
    Reduction("min"),
    Reduction("mean"),
    Reduction("sum"),
    Reduction("topk_mean", k=1),
    Reduction("topk_mean", k=2),
    Reduction("topk_mean", k=4),
    Reduction("softmax", temperature=0.05),
    Reduction("softmax", temperature=2.0),
    Reduction("softmin", temperature=0.3),
]


@pytest.mark.parametrize("reduction", ALL_REDUCTIONS, ids=repr)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_reductions_match_naive_loop_with_empty_groups(reduction: Reduction, seed: int) -> None:
    values, groups = _ragged(seed)
    n_items = 300
    got = reduction(values, groups, n_items=n_items, empty_value=-7.0)
    for item in range(n_items):
        members = values[groups == item].tolist()
        expected = _naive(members, reduction) if members else -7.0
        assert got[item] == pytest.approx(expected, rel=1e-9, abs=1e-12), item


@pytest.mark.parametrize("name", REDUCTION_NAMES)
@pytest.mark.parametrize("seed", [4, 5])
def test_offsets_and_group_index_agree(name: str, seed: int) -> None:
    values, groups = _ragged(seed)
    order = np.argsort(groups, kind="stable")
    offsets = np.r_[0, np.cumsum(np.bincount(groups, minlength=300))]
    by_index = reduce_groups(values, groups, n_items=300, reduction=name)
    by_offsets = reduce_groups(values[order], offsets=offsets, reduction=name)
    assert np.allclose(by_index, by_offsets)


def test_topk_mean_counts_ties() -> None:
    values = np.array([0.5, 0.9, 0.5, 0.2, 0.5, 0.5, 0.1])
    groups = np.array([0, 0, 0, 0, 1, 1, 1])
    two = reduce_groups(values, groups, n_items=2, reduction=Reduction("topk_mean", k=2))
    three = reduce_groups(values, groups, n_items=2, reduction=Reduction("topk_mean", k=3))
    assert two.tolist() == pytest.approx([0.7, 0.5])
    assert three.tolist() == pytest.approx([(0.9 + 0.5 + 0.5) / 3, (0.5 + 0.5 + 0.1) / 3])


def test_soft_reductions_interpolate_between_extremes() -> None:
    values = np.array([0.1, 0.5, 0.9, 0.2])
    groups = np.zeros(4, dtype=int)
    cold = reduce_groups(
        values, groups, n_items=1, reduction=Reduction("softmax", temperature=1e-3)
    )
    hot = reduce_groups(values, groups, n_items=1, reduction=Reduction("softmax", temperature=1e3))
    low = reduce_groups(values, groups, n_items=1, reduction=Reduction("softmin", temperature=1e-3))
    assert cold[0] == pytest.approx(0.9) and low[0] == pytest.approx(0.1)
    assert hot[0] == pytest.approx(values.mean(), abs=1e-3)
    big = Reduction("softmax", temperature=1e-4)(
        np.array([1e4, 1e4 - 1]), np.array([0, 0]), n_items=1
    )
    assert np.isfinite(big).all()


def test_empty_and_zero_item_cases() -> None:
    out = reduce_groups(np.zeros(0), np.zeros(0, dtype=int), n_items=3, empty_value=1.0)
    assert np.array_equal(out, np.ones(3))
    assert reduce_groups(np.zeros(0), np.zeros(0, dtype=int), n_items=0).shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": [0.1, np.nan], "group_index": [0, 1], "n_items": 2}, "non-finite"),
        ({"values": [0.1, np.inf], "group_index": [0, 1], "n_items": 2}, "non-finite"),
        ({"values": [0.1, 0.2], "group_index": [0, 2], "n_items": 2}, r"\[0, 2\)"),
        ({"values": [0.1, 0.2], "group_index": [0], "n_items": 2}, "entries"),
        ({"values": [0.1, 0.2], "group_index": [0.0, 1.0], "n_items": 2}, "integers"),
        ({"values": [0.1, 0.2], "group_index": [0, 1]}, "n_items"),
        ({"values": [0.1, 0.2]}, "exactly one"),
        ({"values": [0.1, 0.2], "offsets": [0, 3]}, "end at"),
        ({"values": [0.1, 0.2], "offsets": [0, 2, 1, 2]}, "non-decreasing"),
        ({"values": [[0.1, 0.2]], "offsets": [0, 2]}, "1-D"),
    ],
)
def test_bad_reduction_input_raises(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reduce_groups(**kwargs)


def test_reduction_registry_and_parameters() -> None:
    assert get_reduction("topk_mean", k=2) == Reduction("topk_mean", k=2)
    with pytest.raises(ValueError, match="unknown reduction"):
        get_reduction("median")
    with pytest.raises(ValueError, match="temperature"):
        Reduction("softmax", temperature=0.0)
    with pytest.raises(ValueError, match="k must"):
        Reduction("topk_mean", k=0)
    with pytest.raises(ValueError, match="empty_value"):
        reduce_groups([0.5], [0], n_items=1, empty_value=math.nan)


def test_detection_region_scores_use_binary_entropy_per_class() -> None:
    rows = np.array([[0.5, 0.0], [1.0, 0.0], [0.9, 0.8], [0.02, 0.01]])
    got = detection_region_scores(rows)
    assert got[0] == pytest.approx(1.0) and got[1] == pytest.approx(0.0)
    assert got[2] > got[3]


def test_detection_policy_hand_made() -> None:
    # image 0: one shown box (conf .9) and a very uncertain hidden box -> shown only.
    # image 1: only hidden boxes -> max over its 2 best candidates by confidence.
    # image 2: no candidates -> empty_score.
    region = np.array([0.2, 0.95, 0.3, 0.9, 0.6, 0.1])
    conf = np.array([0.9, 0.1, 0.2, 0.05, 0.15, 0.24])
    groups = np.array([0, 0, 1, 1, 1, 1])
    got = detection_item_scores(region, conf, groups, 3, display_threshold=0.25, n_candidates=2)
    assert got.tolist() == pytest.approx([0.2, 0.3, 1.0])
    custom = detection_item_scores(region, conf, groups, 3, n_candidates=3, empty_score=0.0)
    assert custom.tolist() == pytest.approx([0.2, 0.6, 0.0])


def test_detection_policy_matches_naive_loop() -> None:
    rng = np.random.default_rng(7)
    n_items, n_boxes = 200, 600
    groups = rng.integers(0, n_items, size=n_boxes)
    region, conf = rng.random(n_boxes), rng.random(n_boxes) * 0.6
    got = detection_item_scores(region, conf, groups, n_items, display_threshold=0.4)
    for item in range(n_items):
        rows = np.flatnonzero(groups == item)
        shown = rows[conf[rows] >= 0.4]
        if len(shown):
            expected = region[shown].max()
        elif len(rows):
            expected = region[rows[np.argsort(-conf[rows])[:3]]].max()
        else:
            expected = 1.0
        assert got[item] == pytest.approx(expected)


def test_mask_policy() -> None:
    iou = np.array([0.95, 0.7, 1.02, 0.5])
    stability = np.array([0.9, 0.99, 0.97, 0.4])
    got = mask_item_scores(iou, stability, np.array([0, 0, 1, 1]), 3)
    assert got.tolist() == pytest.approx([0.3, 0.6, 1.0])
    with pytest.raises(ValueError, match="non-finite"):
        mask_item_scores([np.nan], [0.5], [0], 1)


def test_sentence_policy() -> None:
    # sentence 0: span A (tokens .2,.4 -> .3), span B (.8 -> .8), outside token .99 ignored.
    # sentence 1: no spans -> max token .7.   sentence 2: no tokens -> empty_score.
    tokens = np.array([0.2, 0.4, 0.99, 0.8, 0.1, 0.7])
    sentence = np.array([0, 0, 0, 0, 1, 1])
    span = np.array([0, 0, -1, 1, -1, -1])
    got = sentence_scores(tokens, sentence, 3, span, empty_score=0.5)
    assert got.tolist() == pytest.approx([0.8, 0.7, 0.5])
    no_spans = sentence_scores(tokens, sentence, 3)
    assert no_spans.tolist() == pytest.approx([0.99, 0.7, 0.0])
    with pytest.raises(ValueError, match="crosses"):
        sentence_scores(tokens, sentence, 3, np.array([0, 0, -1, 0, 0, -1]))
