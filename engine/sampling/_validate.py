"""Input checks shared by the sampling modules (bad input -> ``ValueError``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]
Float64Array = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]


def as_float_array(values: npt.ArrayLike, name: str) -> FloatArray:
    """``values`` as a finite float array (float32 kept, anything else float64)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    check_finite(arr, name)
    return arr


def check_finite(arr: FloatArray, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` if ``arr`` holds NaN or inf."""
    if arr.size and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")


def as_scores_1d(scores: npt.ArrayLike, name: str = "scores") -> Float64Array:
    """A finite 1-D float64 array."""
    arr = as_float_array(scores, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D [n], got shape {arr.shape}")
    return arr.astype(np.float64, copy=False)


def as_index_array(indices: npt.ArrayLike, name: str, upper: int) -> IndexArray:
    """A 1-D integer array with every entry in ``[0, upper)``."""
    arr = np.asarray(indices)
    if arr.size == 0:
        return np.zeros(0, dtype=np.intp)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= upper:
        raise ValueError(f"{name} must lie in [0, {upper}), got range [{arr.min()}, {arr.max()}]")
    return arr.astype(np.intp, copy=False)


def check_count(k: int, name: str = "k") -> int:
    """A non-negative integer count."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {k!r}")
    if k < 0:
        raise ValueError(f"{name} must be >= 0, got {k}")
    return int(k)


def check_positive(value: float, name: str) -> float:
    """A finite number > 0."""
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def as_embeddings(embeddings: npt.ArrayLike, n_rows: int | None = None) -> npt.NDArray[np.float32]:
    """Finite float32 embeddings ``[n, d]``, optionally checked against ``n_rows``."""
    arr = as_float_array(embeddings, "embeddings")
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"embeddings must be 2-D [n, d] with d >= 1, got shape {arr.shape}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"embeddings has {arr.shape[0]} rows for {n_rows} scores")
    return np.ascontiguousarray(arr, dtype=np.float32)
