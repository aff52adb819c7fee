"""Samplers: pick ``k`` items to label from per-item scores (higher = label first).

Every sampler has one method, ``select(scores, k, *, embeddings=None, rng)``,
returning up to ``min(k, n)`` distinct indices in rank order (the order to
present them in). Samplers wrap samplers: ``Diverse(TopK(), pool_size=500)``
is "the 500 most uncertain, then ``k`` spread out among them by k-center
greedy on embeddings".

- ``TopK``: ``rank(scores)[:k]``, descending, ties broken by lower index.
- ``PowerSampling(beta)``: ``k`` without replacement with probability
  proportional to ``score ** beta`` (Gumbel-top-k; ``beta = 0`` is uniform,
  large ``beta`` approaches ``TopK``). Needs scores >= 0; zero scores are
  drawn only after every positive one.
- ``Random``: uniform without replacement.
- ``Diverse(inner, pool_size)``: ``inner`` picks a pool, k-center greedy picks
  ``k`` from it, seeded with the pool's first (best) item and spreading away
  from optional ``reference_embeddings`` (already-labeled items). Returned in
  greedy pick order, so every prefix is itself spread out.
- ``Calibration(n_strata)``: a small batch spread over the whole backlog for
  measuring a model (calibration, error rate per score band), not for
  maximising uncertainty: the items are split by score into ``n_strata``
  equal-count quantile bands, ``k`` is shared evenly between bands (any
  remainder goes to the most uncertain bands), and inside a band items are
  picked by k-center greedy over embeddings from a random start (uniformly at
  random without embeddings). Returned in rank order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from engine.sampling._validate import (
    IndexArray,
    as_embeddings,
    as_scores_1d,
    check_count,
)
from engine.sampling.diversity import Metric, k_center_greedy


class Sampler(Protocol):
    def select(
        self,
        scores: npt.ArrayLike,
        k: int,
        *,
        embeddings: npt.ArrayLike | None = None,
        rng: np.random.Generator,
    ) -> IndexArray: ...


def rank(scores: npt.ArrayLike) -> IndexArray:
    """Indices of ``scores`` from highest to lowest; ties keep index order (stable)."""
    values = as_scores_1d(scores)
    return np.argsort(-values, kind="stable").astype(np.intp, copy=False)


def top_k(scores: npt.ArrayLike, k: int) -> IndexArray:
    """``rank(scores)[:k]`` without sorting everything when ``k`` is small."""
    values = as_scores_1d(scores)
    k = min(check_count(k), len(values))
    if k == 0:
        return np.zeros(0, dtype=np.intp)
    if 4 * k >= len(values):
        return rank(values)[:k]
    kth = -np.partition(-values, k - 1)[k - 1]
    above = np.flatnonzero(values > kth)
    ties = np.flatnonzero(values == kth)[: k - len(above)]
    cand = np.concatenate([above, ties])
    return cand[np.argsort(-values[cand], kind="stable")].astype(np.intp)


def power_sample(
    scores: npt.ArrayLike, k: int, *, beta: float, rng: np.random.Generator
) -> IndexArray:
    """``k`` indices without replacement, probability ``∝ score ** beta`` (Gumbel-top-k)."""
    values = as_scores_1d(scores)
    if values.size and values.min() < 0:
        raise ValueError("power sampling needs scores >= 0")
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta}")
    k = min(check_count(k), len(values))
    gumbel = rng.gumbel(size=len(values))
    positive = np.flatnonzero(values > 0) if beta > 0 else np.arange(len(values))
    keys = gumbel[positive] + beta * np.log(values[positive]) if beta > 0 else gumbel
    head = positive[top_k(keys, k)]
    if len(head) == k:
        return head
    zeros = np.flatnonzero(values == 0)
    return np.concatenate([head, zeros[np.argsort(-gumbel[zeros])][: k - len(head)]])


def calibration_indices(
    scores: npt.ArrayLike,
    k: int,
    *,
    rng: np.random.Generator,
    embeddings: npt.ArrayLike | None = None,
    n_strata: int = 5,
    metric: Metric = "euclidean",
) -> IndexArray:
    """A batch of ``k`` spread over score quantiles (and embeddings); see the module docstring."""
    values = as_scores_1d(scores)
    n, k = len(values), min(check_count(k), len(values))
    points = None if embeddings is None else as_embeddings(embeddings, n)
    if check_count(n_strata, "n_strata") < 1:
        raise ValueError("n_strata must be >= 1")
    order = rank(values)
    if k == n:
        return order
    if k == 0:
        return np.zeros(0, dtype=np.intp)
    n_bands = min(n_strata, k)
    quotas = [len(q) for q in np.array_split(np.arange(k), n_bands)]
    picks = []
    for band, quota in zip(np.array_split(order, n_bands), quotas, strict=True):
        if points is None:
            picks.append(rng.choice(band, size=quota, replace=False))
        else:
            start = int(rng.integers(len(band)))
            local = k_center_greedy(points[band], quota, metric=metric, start=start)
            picks.append(band[local])
    chosen = np.concatenate(picks)
    return chosen[np.argsort(-values[chosen], kind="stable")].astype(np.intp)


@dataclass(frozen=True)
class TopK:
    """The ``k`` highest scores."""

    def select(
        self,
        scores: npt.ArrayLike,
        k: int,
        *,
        embeddings: npt.ArrayLike | None = None,
        rng: np.random.Generator,
    ) -> IndexArray:
        return top_k(scores, k)


@dataclass(frozen=True)
class Random:
    """Uniform without replacement; ignores scores except for their count."""

    def select(
        self,
        scores: npt.ArrayLike,
        k: int,
        *,
        embeddings: npt.ArrayLike | None = None,
        rng: np.random.Generator,
    ) -> IndexArray:
        n = len(as_scores_1d(scores))
        return rng.choice(n, size=min(check_count(k), n), replace=False).astype(np.intp)


@dataclass(frozen=True)
class PowerSampling:
    """Sample with probability ``∝ score ** beta`` without replacement."""

    beta: float = 1.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")

    def select(
        self,
        scores: npt.ArrayLike,
        k: int,
        *,
        embeddings: npt.ArrayLike | None = None,
        rng: np.random.Generator,
    ) -> IndexArray:
        return power_sample(scores, k, beta=self.beta, rng=rng)


@dataclass(frozen=True)
class Diverse:
    """``inner`` picks ``pool_size`` candidates; k-center greedy picks ``k`` among them."""

    inner: Sampler = field(default_factory=TopK)
    pool_size: int = 1000
    metric: Metric = "euclidean"
    reference_embeddings: npt.NDArray[np.float32] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if check_count(self.pool_size, "pool_size") < 1:
            raise ValueError("pool_size must be >= 1")

    def select(
        self,
        scores: npt.ArrayLike,
        k: int,
        *,
        embeddings: npt.ArrayLike | None = None,
        rng: np.random.Generator,
    ) -> IndexArray:
        values = as_scores_1d(scores)
        if embeddings is None:
            raise ValueError("Diverse needs embeddings [n, d] aligned with scores")
        points = as_embeddings(embeddings, len(values))
        pool_size = max(self.pool_size, check_count(k))
        pool = self.inner.select(values, pool_size, embeddings=points, rng=rng)
        if len(pool) == 0 or k == 0:
            return np.zeros(0, dtype=np.intp)
        has_reference = self.reference_embeddings is not None
        local = k_center_greedy(
            points[pool],
            k,
            reference_embeddings=self.reference_embeddings,
            metric=self.metric,
            start=None if has_reference else 0,
        )
        return pool[local]


@dataclass(frozen=True)
class Calibration:
    """A score-stratified, embedding-spread batch (see ``calibration_indices``)."""

    n_strata: int = 5
    metric: Metric = "euclidean"

    def select(
        self,
        scores: npt.ArrayLike,
        k: int,
        *,
        embeddings: npt.ArrayLike | None = None,
        rng: np.random.Generator,
    ) -> IndexArray:
        return calibration_indices(
            scores, k, rng=rng, embeddings=embeddings, n_strata=self.n_strata, metric=self.metric
        )


SAMPLERS: dict[str, type[Any]] = {
    "top_k": TopK,
    "random": Random,
    "power": PowerSampling,
    "diverse": Diverse,
    "calibration": Calibration,
}


def build_sampler(name: str, **params: Any) -> Sampler:
    """A sampler by name, e.g. ``build_sampler("power", beta=2.0)``."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    sampler: Sampler = SAMPLERS[name](**params)
    return sampler
