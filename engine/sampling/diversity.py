"""Diversity: k-center greedy (core-set) selection on embeddings.

``k_center_greedy`` repeatedly picks the point farthest from everything picked
so far (and from any already-selected / already-labeled points), which
2-approximates the k-center objective (Sener & Savarese, "Active Learning for
Convolutional Neural Networks: A Core-Set Approach", 2018). Each pick is one
matrix-vector product and one elementwise ``minimum`` over ``[n]``
(float32), so picking ``k`` from ``n x d`` costs ``O(k n d)`` with no
``[n, k]`` distance matrix.

Metrics: ``euclidean`` (squared distances internally: same argmax) or
``cosine`` (``1 - cos``; zero-norm rows raise ``ValueError``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from engine.sampling._validate import IndexArray, as_embeddings, as_index_array, check_count

Metric = Literal["euclidean", "cosine"]
METRICS: tuple[str, ...] = ("euclidean", "cosine")
_CHUNK_ELEMENTS = 1 << 24  # at most 64 MiB of float32 distances per chunk


class _Space:
    """Embeddings prepared for fast distances to a few centers."""

    def __init__(self, embeddings: npt.NDArray[np.float32], metric: str) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
        self.metric = metric
        self.points = _unit_rows(embeddings) if metric == "cosine" else embeddings
        self.sq_norms = np.einsum("ij,ij->i", self.points, self.points)

    def distances_to(self, centers: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``[n, m]`` distances from every point to each row of ``centers``."""
        dots = self.points @ centers.T
        if self.metric == "cosine":
            return np.maximum(1 - dots, 0, out=dots)
        center_sq = np.einsum("ij,ij->i", centers, centers)
        dots *= -2
        dots += self.sq_norms[:, None]
        dots += center_sq[None, :]
        return np.maximum(dots, 0, out=dots)

    def distances_to_row(self, row: int) -> npt.NDArray[np.float32]:
        """``[n]`` distances from every point to point ``row`` (the greedy hot path)."""
        dots = self.points @ self.points[row]
        if self.metric == "cosine":
            return np.maximum(1 - dots, 0, out=dots)
        dots *= -2
        dots += self.sq_norms
        dots += self.sq_norms[row]
        return np.maximum(dots, 0, out=dots)

    def prepare(self, external: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Map outside embeddings (e.g. already-labeled items) into this space."""
        if external.shape[1] != self.points.shape[1]:
            raise ValueError(
                f"reference_embeddings have dim {external.shape[1]}, "
                f"embeddings have dim {self.points.shape[1]}"
            )
        return _unit_rows(external) if self.metric == "cosine" else external


def _unit_rows(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("cosine metric needs non-zero embeddings; found an all-zero row")
    return (x / norms).astype(np.float32, copy=False)


def _min_distance(space: _Space, centers: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Distance from every point to its nearest center, chunked over centers."""
    n = space.points.shape[0]
    out = np.full(n, np.inf, dtype=np.float32)
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for lo in range(0, len(centers), step):
        np.minimum(out, space.distances_to(centers[lo : lo + step]).min(axis=1), out=out)
    return out


def _default_start(space: _Space) -> int:
    """The point nearest the centroid: a typical, deterministic first center."""
    centroid = space.points.mean(axis=0, keepdims=True)
    return int(np.argmin(space.distances_to(centroid)[:, 0]))


def k_center_greedy(
    embeddings: npt.ArrayLike,
    k: int,
    *,
    selected: npt.ArrayLike | None = None,
    reference_embeddings: npt.ArrayLike | None = None,
    metric: Metric = "euclidean",
    start: int | None = None,
) -> IndexArray:
    """Pick up to ``k`` new rows of ``embeddings [n, d]``, farthest-first; indices in pick order.

    ``selected`` (row indices) and ``reference_embeddings [m, d]`` (points
    outside ``embeddings``, e.g. labeled items) count as already chosen: new
    picks spread away from them and never repeat a ``selected`` row. ``start``
    forces the first pick; without it and without any already-chosen point
    the first pick is the row nearest the centroid. Returns
    ``min(k, n - len(selected))`` indices.
    """
    points = as_embeddings(embeddings)
    n = points.shape[0]
    k = check_count(k)
    space = _Space(points, metric)
    chosen = np.unique(as_index_array([] if selected is None else selected, "selected", n))
    centers = [space.points[chosen]]
    if reference_embeddings is not None:
        centers.append(space.prepare(as_embeddings(reference_embeddings)))
    min_dist = _min_distance(space, np.concatenate(centers))
    min_dist[chosen] = -np.inf
    k = min(k, n - len(chosen))
    if start is not None:
        start = int(as_index_array([start], "start", n)[0])
        if min_dist[start] == -np.inf:
            raise ValueError(f"start {start} is already selected")
    elif np.isinf(min_dist).all() and k > 0:
        start = _default_start(space)
    picks = np.empty(k, dtype=np.intp)
    for i in range(k):
        pick = start if i == 0 and start is not None else int(np.argmax(min_dist))
        picks[i] = pick
        np.minimum(min_dist, space.distances_to_row(pick), out=min_dist)
        min_dist[pick] = -np.inf
    return picks
