"""Item embeddings to one width: a fixed Gaussian random projection, L2-normalised.

Every model adapter that stores an embedding (``Prediction.embedding``, at most
``engine.types.EMBEDDING_WIDTH`` wide) reduces its pooled features with
``project_embedding``. A vector at most ``width`` wide keeps its values; a wider
one is multiplied by a ``[d, width]`` matrix of N(0, 1 / width) entries
(Johnson-Lindenstrauss: cosine similarities are kept up to a small distortion).
Either way the output is L2-normalised float32, so a dot product is a cosine.

The matrix is the same in every call, process and machine for one ``(d, width)``:
it is drawn from numpy's legacy ``RandomState`` (whose stream numpy keeps stable
across versions, unlike ``Generator``'s) under a seed derived from ``d`` and
``width`` only, and cached. Changing ``SEED`` changes every stored embedding.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from engine.types import EMBEDDING_WIDTH

__all__ = ["SEED", "project_embedding", "projection_matrix"]

SEED = 20_240_917
_EPS = 1e-12


@functools.lru_cache(maxsize=16)
def _matrix(in_width: int, width: int) -> npt.NDArray[np.float32]:
    seed = (SEED + 1_000_003 * in_width + 7_919 * width) % 2**32
    rng = np.random.RandomState(seed)
    matrix = rng.standard_normal((in_width, width)) / np.sqrt(width)
    out = matrix.astype(np.float32)
    out.setflags(write=False)
    return out


def projection_matrix(in_width: int, width: int = EMBEDDING_WIDTH) -> npt.NDArray[np.float32]:
    """The read-only ``[in_width, width]`` projection used for ``in_width``-wide vectors."""
    if in_width <= 0 or width <= 0:
        raise ValueError(f"widths must be positive, got {in_width} -> {width}")
    return _matrix(int(in_width), int(width))


def project_embedding(vec: npt.ArrayLike, width: int = EMBEDDING_WIDTH) -> npt.NDArray[np.float32]:
    """``vec`` (``[d]``, or ``[n, d]`` row by row) at most ``width`` wide, L2-normalised.

    A zero vector stays zero. ``ValueError`` for a non-finite or empty input.
    """
    array = np.asarray(vec, dtype=np.float64)
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise ValueError(f"embedding must be [d] or [n, d] with d > 0, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("embedding must be finite")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    in_width = array.shape[-1]
    if in_width > width:
        array = array @ projection_matrix(in_width, width).astype(np.float64)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return (array / np.maximum(norms, _EPS)).astype(np.float32)
