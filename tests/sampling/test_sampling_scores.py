"""Uncertainty scores: ranges, extremes, ordering, stochastic passes, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.sampling.scores import (
    bald,
    binary_entropy,
    check_probs,
    entropy,
    get_score,
    least_confidence,
    margin,
    normalize_probs,
    score,
    variation_ratio,
)

SINGLE_PASS = [least_confidence, margin, entropy]


def _dirichlet(rng: np.random.Generator, shape: tuple[int, ...], n_classes: int) -> np.ndarray:
    alpha = rng.uniform(0.1, 3.0, size=n_classes)
    return rng.dirichlet(alpha, size=shape)


@pytest.mark.parametrize("fn", SINGLE_PASS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scores_lie_in_unit_interval_and_keep_batch_shape(fn, dtype) -> None:
    rng = np.random.default_rng(0)
    probs = _dirichlet(rng, (4, 50), 7).astype(dtype)
    out = fn(probs)
    assert out.shape == (4, 50)
    assert out.dtype == dtype
    assert (out >= 0).all() and (out <= 1).all()


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_uniform_is_maximum_and_one_hot_is_zero(n_classes: int) -> None:
    rng = np.random.default_rng(1)
    uniform = np.full(n_classes, 1.0 / n_classes)
    one_hot = np.eye(n_classes)
    random_rows = _dirichlet(rng, (500,), n_classes)
    expected_max = {least_confidence: 1 - 1 / n_classes, margin: 1.0, entropy: 1.0}
    for fn, top in expected_max.items():
        assert fn(uniform) == pytest.approx(top)
        assert np.allclose(fn(one_hot), 0.0)
        assert (fn(random_rows) <= fn(uniform) + 1e-12).all()


def test_ordering_on_hand_made_distributions() -> None:
    confident = [0.9, 0.05, 0.05]
    unsure = [0.6, 0.3, 0.1]
    lost = [0.4, 0.35, 0.25]
    probs = np.array([confident, unsure, lost])
    for fn in SINGLE_PASS:
        values = fn(probs)
        assert values[0] < values[1] < values[2], fn.__name__


def test_margin_and_least_confidence_disagree_where_they_should() -> None:
    two_way_tie = [0.5, 0.5, 0.0]  # a coin flip between two classes
    spread = [0.4, 0.3, 0.3]  # low top probability but a clear winner
    probs = np.array([two_way_tie, spread])
    assert margin(probs)[0] > margin(probs)[1]
    assert least_confidence(probs)[0] < least_confidence(probs)[1]


def test_entropy_matches_formula() -> None:
    row = [0.7, 0.2, 0.1, 0.0]
    expected = -sum(p * math.log(p) for p in row if p > 0) / math.log(4)
    assert entropy(np.array(row)) == pytest.approx(expected)
    assert margin(np.array(row)) == pytest.approx(1 - (0.7 - 0.2))
    assert least_confidence(np.array(row)) == pytest.approx(0.3)


def test_single_class_scores_are_zero() -> None:
    probs = np.ones((3, 1))
    for fn in SINGLE_PASS:
        assert np.array_equal(fn(probs), np.zeros(3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("fn", [*SINGLE_PASS, bald, variation_ratio, binary_entropy])
def test_non_finite_input_raises(fn, bad: float) -> None:
    probs = np.full((2, 3, 4), 0.25)
    probs[1, 2, 0] = bad
    with pytest.raises(ValueError, match="non-finite"):
        fn(probs)


def test_rows_must_sum_to_one_unless_normalized() -> None:
    raw = np.array([[2.0, 1.0, 1.0], [0.1, 0.1, 0.2]])
    with pytest.raises(ValueError, match=r"sum to 1.*normalize=True"):
        entropy(raw)
    expected = entropy(raw / raw.sum(axis=1, keepdims=True))
    assert np.allclose(entropy(raw, normalize=True), expected)
    assert np.allclose(normalize_probs(raw).sum(axis=1), 1.0)


def test_negative_probs_raise_but_rounding_noise_is_clipped() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        margin(np.array([1.2, -0.2]))
    clipped = check_probs(np.array([1.0 + 1e-5, -1e-5]))
    assert clipped.min() == 0.0


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (np.zeros((2, 0)), "n_classes"),
        (np.array(["a", "b"]), "numeric"),
        (np.array([[0.0, 0.0]]), "all-zero"),
    ],
)
def test_malformed_probs_raise(probs: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        entropy(probs, normalize=True)


def test_empty_batch_gives_empty_scores() -> None:
    for fn in SINGLE_PASS:
        assert fn(np.zeros((0, 5))).shape == (0,)


def test_bald_is_zero_when_passes_agree_even_if_each_is_unsure() -> None:
    rng = np.random.default_rng(2)
    one_pass = _dirichlet(rng, (30,), 5)
    agreeing = np.stack([one_pass] * 6)
    assert np.allclose(bald(agreeing), 0.0, atol=1e-12)
    assert np.array_equal(variation_ratio(agreeing), np.zeros(30))
    uniform_agreeing = np.full((4, 1, 5), 0.2)
    assert bald(uniform_agreeing)[0] == pytest.approx(0.0, abs=1e-12)


def test_bald_is_positive_when_passes_disagree() -> None:
    confident_opposites = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert bald(confident_opposites)[0] == pytest.approx(1.0)
    mild = np.array([[[0.7, 0.3]], [[0.4, 0.6]], [[0.6, 0.4]]])
    assert 0 < bald(mild)[0] < bald(confident_opposites)[0]


def test_bald_matches_naive_loop() -> None:
    rng = np.random.default_rng(3)
    probs = _dirichlet(rng, (8, 40), 6)  # [passes, items, classes]

    def h(row: np.ndarray) -> float:
        return -sum(p * math.log(p) for p in row if p > 0) / math.log(len(row))

    expected = [
        h(probs[:, i].mean(axis=0)) - np.mean([h(probs[t, i]) for t in range(8)]) for i in range(40)
    ]
    assert np.allclose(bald(probs), expected)


def test_variation_ratio_counts_the_mode() -> None:
    passes = np.array([[[0.9, 0.1, 0.0]], [[0.8, 0.2, 0.0]], [[0.1, 0.1, 0.8]]])
    assert variation_ratio(passes)[0] == pytest.approx(1 / 3)


def test_stochastic_scores_need_a_pass_axis() -> None:
    with pytest.raises(ValueError, match="n_passes"):
        bald(np.array([0.5, 0.5]))


def test_binary_entropy_of_independent_scores() -> None:
    p = np.array([0.0, 0.5, 1.0, 0.1, 0.9])
    h = binary_entropy(p)
    assert h[1] == pytest.approx(1.0)
    assert h[0] == 0.0 and h[2] == 0.0
    assert h[3] == pytest.approx(h[4])
    assert h[3] == pytest.approx(-(0.1 * math.log2(0.1) + 0.9 * math.log2(0.9)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_entropy(np.array([1.5]))


def test_registry_by_name() -> None:
    probs = np.array([[0.6, 0.4]])
    assert score("margin", probs) == pytest.approx(margin(probs))
    assert get_score("bald") is bald
    with pytest.raises(ValueError, match="unknown score"):
        get_score("confidence")
