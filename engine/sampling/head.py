"""The order of the queue's head under a policy's diversity and sampler (pure numpy).

``head_order(scores, embeddings, policy)`` takes the head (the ``policy.head``
best items, sorted by score descending) and returns a permutation of it:

- ``kcenter``: the most uncertain item first, then k-center greedy (cosine
  distance on the embeddings), each pick the item farthest from every pick so
  far: near-duplicates come back only after everything different did;
- ``hybrid``: each pick maximises ``(1 - weight) * score + weight * d / d0``,
  ``d`` its cosine distance to the nearest pick, ``d0`` the largest such
  distance after the first pick (so both terms live in [0, 1]);
- ``power`` sampler (after diversity ``none``): a draw without replacement,
  probability ``∝ score ** beta`` (Gumbel-top-k, seeded by ``policy.seed``).

Diversity picks ``policy.picks`` items this way (the ones served next); the
rest of the head follows them in score order, so one ranking costs
``O(picks x head x d)``, not ``O(head^2 x d)``. Items without an embedding (or
with one of another width than most) are never picked: they follow in score
order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from engine.sampling.diversity import k_center_greedy
from engine.sampling.policy import RankPolicy
from engine.sampling.samplers import power_sample

IndexArray = npt.NDArray[np.intp]


def head_order(
    scores: npt.ArrayLike,
    embeddings: Sequence[npt.NDArray[np.float32] | None],
    policy: RankPolicy,
) -> IndexArray:
    """A permutation of ``range(len(scores))`` (``scores`` sorted descending)."""
    values = np.asarray(scores, dtype=np.float64)
    n = len(values)
    if len(embeddings) != n:
        raise ValueError(f"{len(embeddings)} embeddings for {n} scores")
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    if policy.diversity == "none":
        if policy.sampler == "power":
            rng = np.random.default_rng(policy.seed)
            return power_sample(np.clip(values, 0.0, None), n, beta=policy.beta, rng=rng)
        return np.arange(n, dtype=np.intp)
    usable = _usable(embeddings)
    if len(usable) < 2:
        return np.arange(n, dtype=np.intp)
    points = np.stack([_unit(embeddings[i]) for i in usable])  # type: ignore[arg-type]
    n_picks = min(policy.picks, len(usable))
    if policy.diversity == "kcenter":
        local = k_center_greedy(points, n_picks, metric="cosine", start=0)
    else:
        local = hybrid_greedy(values[usable], points, policy.weight, n_picks)
    picked = usable[local]
    rest = np.setdiff1d(np.arange(n, dtype=np.intp), picked)  # sorted: score order
    return np.concatenate([picked, rest]).astype(np.intp)


def hybrid_greedy(
    scores: npt.NDArray[np.float64],
    unit_points: npt.NDArray[np.float32],
    weight: float,
    n_picks: int,
) -> IndexArray:
    """``n_picks`` greedy picks maximising ``(1 - weight) * score + weight * scaled distance``."""
    n = len(scores)
    picks = np.empty(min(n_picks, n), dtype=np.intp)
    picks[0] = int(np.argmax(scores))
    min_dist = 1.0 - unit_points @ unit_points[picks[0]]
    scale = float(min_dist.max()) or 1.0
    taken = np.zeros(n, dtype=bool)
    taken[picks[0]] = True
    for i in range(1, len(picks)):
        gain = (1.0 - weight) * scores + weight * np.clip(min_dist, 0.0, None) / scale
        gain[taken] = -np.inf
        pick = int(np.argmax(gain))
        picks[i] = pick
        taken[pick] = True
        np.minimum(min_dist, 1.0 - unit_points @ unit_points[pick], out=min_dist)
    return picks


def _usable(embeddings: Sequence[npt.NDArray[np.float32] | None]) -> IndexArray:
    """Rows with a non-zero embedding of the most common width."""
    present = [(i, len(e)) for i, e in enumerate(embeddings) if e is not None and np.any(e)]
    if not present:
        return np.zeros(0, dtype=np.intp)
    widths = [w for _, w in present]
    width = max(set(widths), key=widths.count)
    return np.array([i for i, w in present if w == width], dtype=np.intp)


def _unit(vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    v = np.asarray(vector, dtype=np.float32)
    return v / np.float32(np.linalg.norm(v))
