"""Ranking, k-center greedy and the composable samplers."""

from __future__ import annotations

import numpy as np
import pytest

from engine.sampling.diversity import k_center_greedy
from engine.sampling.samplers import (
    Calibration,
    Diverse,
    PowerSampling,
    Random,
    Sampler,
    TopK,
    build_sampler,
    power_sample,
    rank,
    top_k,
)


def _naive_k_center(points: np.ndarray, k: int, start: int) -> list[int]:
    """Recompute every distance to every picked center at each step (float64)."""
    picks = [start]
    while len(picks) < k:
        d = np.linalg.norm(points[:, None, :] - points[picks][None, :, :], axis=2).min(axis=1)
        d[picks] = -1
        picks.append(int(np.argmax(d)))
    return picks


def test_rank_is_descending_and_stable() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=400).astype(float)  # many ties
    expected = sorted(range(400), key=lambda i: (-scores[i], i))
    assert rank(scores).tolist() == expected
    for k in (0, 1, 7, 50, 99, 400, 1000):
        assert top_k(scores, k).tolist() == expected[:k]


def test_rank_rejects_non_finite() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        rank(np.array([0.1, np.nan]))


def test_k_center_picks_the_far_point() -> None:
    rng = np.random.default_rng(1)
    cluster = rng.normal(0, 0.1, size=(50, 2))
    points = np.vstack([cluster, [[100.0, 100.0]]])
    assert k_center_greedy(points, 2, start=0).tolist() == [0, 50]
    assert k_center_greedy(points, 1, selected=[3]).tolist() == [50]
    directions = np.array([[1.0, 0.0], [0.99, 0.05], [0.98, -0.03], [-1.0, 0.01]])
    assert k_center_greedy(directions * 5, 2, metric="cosine", start=0).tolist() == [0, 3]


def test_k_center_matches_naive_on_random_data() -> None:
    rng = np.random.default_rng(2)
    points = rng.normal(size=(300, 16))
    assert k_center_greedy(points, 20, start=5).tolist() == _naive_k_center(points, 20, 5)


def test_k_center_default_start_is_nearest_to_centroid() -> None:
    points = np.array([[0.0, 0.0], [10.0, 0.0], [4.0, 0.0], [-2.0, 0.0]])  # centroid x=3
    assert k_center_greedy(points, 1).tolist() == [2]


def test_k_center_respects_already_selected_and_reference_points() -> None:
    points = np.array([[0.0, 0.0], [1.0, 0.0], [9.0, 0.0], [10.0, 0.0]])
    picks = k_center_greedy(points, 2, selected=[0, 3])
    assert set(picks.tolist()) == {1, 2}
    near_ref = k_center_greedy(points, 1, reference_embeddings=np.array([[10.0, 0.0]]))
    assert near_ref.tolist() == [0]
    with pytest.raises(ValueError, match="dim"):
        k_center_greedy(points, 1, reference_embeddings=np.zeros((1, 3)))


def test_k_center_returns_distinct_indices_even_for_duplicates() -> None:
    points = np.ones((5, 3))
    picks = k_center_greedy(points, 10)
    assert sorted(picks.tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embeddings": np.zeros((3, 2)), "k": 1, "metric": "cosine"}, "non-zero"),
        ({"embeddings": np.zeros((3, 2)), "k": 1, "metric": "manhattan"}, "unknown metric"),
        ({"embeddings": np.full((3, 2), np.nan), "k": 1}, "non-finite"),
        ({"embeddings": np.zeros(3), "k": 1}, "2-D"),
        ({"embeddings": np.zeros((3, 2)), "k": -1}, ">= 0"),
        ({"embeddings": np.zeros((3, 2)), "k": 1, "selected": [3]}, "selected"),
        ({"embeddings": np.zeros((3, 2)), "k": 1, "selected": [1], "start": 1}, "already"),
    ],
)
def test_k_center_bad_input_raises(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        k_center_greedy(**kwargs)


def test_power_sampling_frequencies_follow_score_power() -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    rng = np.random.default_rng(3)
    draws = 20_000
    firsts = np.bincount(
        [power_sample(scores, 1, beta=1.0, rng=rng)[0] for _ in range(draws)], minlength=4
    )
    assert np.allclose(firsts / draws, scores / scores.sum(), atol=0.015)
    squared = np.bincount(
        [power_sample(scores, 1, beta=2.0, rng=rng)[0] for _ in range(draws)], minlength=4
    )
    assert np.allclose(squared / draws, scores**2 / (scores**2).sum(), atol=0.015)


def test_power_sampling_edge_cases() -> None:
    rng = np.random.default_rng(4)
    scores = np.array([0.0, 0.3, 0.0, 0.9, 0.5])
    picks = power_sample(scores, 5, beta=1.0, rng=rng)
    assert sorted(picks[:3].tolist()) == [1, 3, 4] and sorted(picks[3:].tolist()) == [0, 2]
    steep = PowerSampling(beta=500.0).select(np.linspace(0.1, 1, 50), 5, rng=rng)
    assert steep.tolist() == TopK().select(np.linspace(0.1, 1, 50), 5, rng=rng).tolist()
    with pytest.raises(ValueError, match=">= 0"):
        power_sample(np.array([-0.1, 0.2]), 1, beta=1.0, rng=rng)
    with pytest.raises(ValueError, match="beta"):
        PowerSampling(beta=-1.0)


def _backlog(seed: int = 5, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(n), rng.normal(size=(n, 8)).astype(np.float32)


SAMPLERS: list[Sampler] = [
    TopK(),
    Random(),
    PowerSampling(beta=2.0),
    Diverse(TopK(), pool_size=50),
    Diverse(PowerSampling(beta=1.0), pool_size=60),
    Calibration(n_strata=4),
]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_samplers_are_deterministic_distinct_and_bounded(sampler: Sampler) -> None:
    scores, embeddings = _backlog()
    first = sampler.select(scores, 20, embeddings=embeddings, rng=np.random.default_rng(9))
    again = sampler.select(scores, 20, embeddings=embeddings, rng=np.random.default_rng(9))
    assert first.tolist() == again.tolist()
    assert len(set(first.tolist())) == 20 and first.min() >= 0 and first.max() < 400
    everything = sampler.select(
        scores[:10], 50, embeddings=embeddings[:10], rng=np.random.default_rng(0)
    )
    assert sorted(everything.tolist()) == list(range(10))
    assert sampler.select(scores, 0, embeddings=embeddings, rng=np.random.default_rng(0)).size == 0
    with pytest.raises(ValueError, match="non-finite"):
        bad = scores.copy()
        bad[7] = np.nan
        sampler.select(bad, 5, embeddings=embeddings, rng=np.random.default_rng(0))


@pytest.mark.parametrize("sampler", [Random(), PowerSampling(beta=1.0), Calibration()], ids=repr)
def test_stochastic_samplers_depend_on_the_seed(sampler: Sampler) -> None:
    scores, embeddings = _backlog()
    a = sampler.select(scores, 20, embeddings=embeddings, rng=np.random.default_rng(1))
    b = sampler.select(scores, 20, embeddings=embeddings, rng=np.random.default_rng(2))
    assert a.tolist() != b.tolist()


def test_diverse_top_k_skips_near_duplicates() -> None:
    scores = np.array([0.99, 0.98, 0.97, 0.96, 0.5, 0.1])
    embeddings = np.array(
        [[0.0, 0.0], [0.01, 0.0], [0.0, 0.01], [0.01, 0.01], [5.0, 5.0], [9.0, 0.0]]
    )
    rng = np.random.default_rng(0)
    assert TopK().select(scores, 2, rng=rng).tolist() == [0, 1]
    assert Diverse(TopK(), pool_size=5).select(
        scores, 2, embeddings=embeddings, rng=rng
    ).tolist() == [0, 4]
    with pytest.raises(ValueError, match="embeddings"):
        Diverse(TopK(), pool_size=5).select(scores, 2, rng=rng)
    with pytest.raises(ValueError, match="rows"):
        Diverse(TopK(), pool_size=5).select(scores, 2, embeddings=embeddings[:3], rng=rng)


def test_diverse_avoids_already_labeled_reference_points() -> None:
    scores = np.array([0.9, 0.8, 0.7])
    embeddings = np.array([[0.0, 0.0], [5.0, 0.0], [10.0, 0.0]])
    labeled = np.array([[0.0, 0.1], [10.0, 0.1]])
    sampler = Diverse(TopK(), pool_size=3, reference_embeddings=labeled)
    assert sampler.select(
        scores, 1, embeddings=embeddings, rng=np.random.default_rng(0)
    ).tolist() == [1]


def test_calibration_covers_every_score_band_in_rank_order() -> None:
    scores, embeddings = _backlog(n=1000)
    bands = np.digitize(scores, np.quantile(scores, [0.25, 0.5, 0.75]))
    for emb in (embeddings, None):
        picks = Calibration(n_strata=4).select(
            scores, 12, embeddings=emb, rng=np.random.default_rng(3)
        )
        assert np.bincount(bands[picks], minlength=4).tolist() == [3, 3, 3, 3]
        assert (np.diff(scores[picks]) <= 0).all()


def test_build_sampler_by_name() -> None:
    assert build_sampler("power", beta=3.0) == PowerSampling(beta=3.0)
    assert isinstance(build_sampler("diverse", pool_size=10), Diverse)
    with pytest.raises(ValueError, match="unknown sampler"):
        build_sampler("uncertainty")
