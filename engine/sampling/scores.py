"""Uncertainty scores from class probabilities.

Every score is "label me first" oriented: higher means more uncertain, and
every score lies in ``[0, 1]``. All functions are vectorised over the last
axis of a ``[..., n_classes]`` array and return an array of shape ``[...]``;
float32 input stays float32, anything else is computed in float64.

Single-pass scores, ``probs`` of shape ``[..., n_classes]``:

- ``least_confidence`` = ``1 - max p``; in ``[0, 1 - 1/n_classes]``.
- ``margin`` = ``1 - (p1 - p2)`` with ``p1 >= p2`` the two largest; in ``[0, 1]``
  (one class only: ``p2 = 0``).
- ``entropy`` = ``-sum p log p / log(n_classes)``: Shannon entropy *normalised*
  by its maximum so that the uniform distribution scores exactly 1 whatever
  the number of classes (one class only: 0).

Stochastic-pass scores (MC dropout, test-time augmentation), ``probs`` of shape
``[n_passes, ..., n_classes]``, reduced over axis 0:

- ``bald`` (mutual information) = ``H(mean_t p_t) - mean_t H(p_t)`` with ``H``
  the normalised entropy above, so 0 when every pass agrees and at most 1.
- ``variation_ratio`` = ``1 - (passes voting for the modal class) / n_passes``.

Validation: a non-finite value, a value below ``-atol`` or a row whose sum is
more than ``atol`` away from 1 raises ``ValueError``; ``normalize=True``
rescales each row to sum to 1 instead (an all-zero row still raises).

Independent per-class scores (a detector's per-class sigmoid, e.g. YOLO: a
box can score 0.9 "person" and 0.8 "rider") are not a distribution: score
each of them with ``binary_entropy`` (1 at p = 0.5, 0 at p = 0 or 1) and take
the max over classes per box (see ``engine.sampling.policies``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.sampling._validate import FloatArray, as_float_array

DEFAULT_ATOL = 1e-3

ScoreFn = Callable[..., FloatArray]


def check_probs(
    probs: npt.ArrayLike,
    *,
    normalize: bool = False,
    atol: float = DEFAULT_ATOL,
    name: str = "probs",
) -> FloatArray:
    """Validate ``[..., n_classes]`` probabilities; return them (rescaled if ``normalize``).

    Tiny negatives (``>= -atol``, e.g. from half precision) are clipped to 0.
    """
    arr = as_float_array(probs, name)
    if arr.ndim < 1 or arr.shape[-1] < 1:
        raise ValueError(f"{name} must have shape [..., n_classes>=1], got {arr.shape}")
    if arr.size == 0:
        return arr
    lowest = arr.min()
    if lowest < -atol:
        raise ValueError(f"{name} must be >= 0, found {float(lowest):.4g}")
    if lowest < 0:
        arr = np.maximum(arr, 0)
    sums = arr.sum(axis=-1)
    if normalize:
        if (sums <= 0).any():
            raise ValueError(f"{name} has an all-zero row; cannot normalize it")
        return arr / sums[..., None]
    err = np.abs(sums - 1)
    worst = int(np.argmax(err))
    if err.flat[worst] > atol:
        raise ValueError(
            f"{name} rows must sum to 1 (atol={atol}); row {np.unravel_index(worst, sums.shape)} "
            f"sums to {float(sums.flat[worst]):.6g}. Pass normalize=True to rescale rows."
        )
    return arr


def normalize_probs(probs: npt.ArrayLike, *, name: str = "probs") -> FloatArray:
    """Rescale non-negative scores so each last-axis row sums to 1."""
    return check_probs(probs, normalize=True, name=name)


def _unit(x: FloatArray) -> FloatArray:
    """Clip rounding noise into ``[0, 1]`` (in place for arrays; 0-d input stays a scalar)."""
    if isinstance(x, np.ndarray) and x.ndim:
        return np.clip(x, 0.0, 1.0, out=x)
    return np.clip(x, 0.0, 1.0)


def _entropy_unchecked(p: FloatArray) -> FloatArray:
    n_classes = p.shape[-1]
    if n_classes == 1:
        return np.zeros(p.shape[:-1], dtype=p.dtype)
    tiny = np.finfo(p.dtype).tiny
    h = -(p * np.log(np.maximum(p, tiny))).sum(axis=-1)
    h /= np.log(n_classes)
    return _unit(h)


def least_confidence(
    probs: npt.ArrayLike, *, normalize: bool = False, atol: float = DEFAULT_ATOL
) -> FloatArray:
    """``1 - max_c p[..., c]``; shape ``[...]``."""
    p = check_probs(probs, normalize=normalize, atol=atol)
    out = 1 - p.max(axis=-1)
    return _unit(out)


def margin(
    probs: npt.ArrayLike, *, normalize: bool = False, atol: float = DEFAULT_ATOL
) -> FloatArray:
    """``1 - (p1 - p2)`` for the two largest probabilities; shape ``[...]``."""
    p = check_probs(probs, normalize=normalize, atol=atol)
    if p.shape[-1] == 1:
        out = 1 - p[..., 0]
    else:
        top2 = np.partition(p, -2, axis=-1)[..., -2:]
        out = 1 - (top2[..., 1] - top2[..., 0])
    return _unit(out)


def entropy(
    probs: npt.ArrayLike, *, normalize: bool = False, atol: float = DEFAULT_ATOL
) -> FloatArray:
    """Shannon entropy divided by ``log(n_classes)`` (uniform -> 1); shape ``[...]``."""
    return _entropy_unchecked(check_probs(probs, normalize=normalize, atol=atol))


def _check_passes(probs: npt.ArrayLike, normalize: bool, atol: float) -> FloatArray:
    p = check_probs(probs, normalize=normalize, atol=atol)
    if p.ndim < 2 or p.shape[0] < 1:
        raise ValueError(
            f"stochastic probs must have shape [n_passes>=1, ..., n_classes], got {p.shape}"
        )
    return p


def bald(
    probs: npt.ArrayLike, *, normalize: bool = False, atol: float = DEFAULT_ATOL
) -> FloatArray:
    """Mutual information between prediction and model over passes (axis 0), in ``[0, 1]``.

    ``H(mean_t p_t) - mean_t H(p_t)`` with the normalised entropy; shape ``probs.shape[1:-1]``.
    """
    p = _check_passes(probs, normalize, atol)
    out = _entropy_unchecked(p.mean(axis=0)) - _entropy_unchecked(p).mean(axis=0)
    return _unit(out)


def variation_ratio(
    probs: npt.ArrayLike, *, normalize: bool = False, atol: float = DEFAULT_ATOL
) -> FloatArray:
    """``1 - mode_count / n_passes`` of per-pass argmax (axis 0); shape ``probs.shape[1:-1]``."""
    p = _check_passes(probs, normalize, atol)
    votes = p.argmax(axis=-1)
    mode_count = np.zeros(votes.shape[1:], dtype=np.int64)
    for cls in range(p.shape[-1]):
        np.maximum(mode_count, (votes == cls).sum(axis=0), out=mode_count)
    return (1 - mode_count / p.shape[0]).astype(p.dtype)


def binary_entropy(scores: npt.ArrayLike) -> FloatArray:
    """Entropy in bits of independent yes/no scores ``p`` in ``[0, 1]``; same shape, in ``[0, 1]``.

    ``-(p log2 p + (1 - p) log2 (1 - p))``: 1 at ``p = 0.5``, 0 at ``p in {0, 1}``.
    """
    p = as_float_array(scores, "scores")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(
            f"binary scores must lie in [0, 1], got range [{p.min():.4g}, {p.max():.4g}]"
        )
    tiny = np.finfo(p.dtype).tiny
    q = 1 - p
    h = -(p * np.log2(np.maximum(p, tiny)) + q * np.log2(np.maximum(q, tiny)))
    return _unit(h)


SCORES: dict[str, ScoreFn] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
}
STOCHASTIC_SCORES: dict[str, ScoreFn] = {
    "bald": bald,
    "variation_ratio": variation_ratio,
}


def get_score(name: str) -> ScoreFn:
    """Look up a score function by name (single-pass or stochastic)."""
    table: dict[str, ScoreFn] = {**SCORES, **STOCHASTIC_SCORES}
    if name not in table:
        raise ValueError(f"unknown score {name!r}; choose one of {sorted(table)}")
    return table[name]


def score(name: str, probs: npt.ArrayLike, **options: Any) -> FloatArray:
    """``get_score(name)(probs, **options)``."""
    return get_score(name)(probs, **options)
