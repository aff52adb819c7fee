"""Per-item reductions of region / token / mask scores over ragged groups.

Input is flat: ``values: float[n]`` plus either ``group_index: int[n]`` (item
of each value, any order) with ``n_items``, or ``offsets: int[n_items + 1]``
(values laid out item by item; item ``i`` owns ``values[offsets[i]:offsets[i+1]]``).
Output is ``float64[n_items]``. Every reduction is a few whole-array numpy
passes built on three group primitives (per-item max, per-item sum, and
broadcasting a per-item value back to its members): ``ufunc.reduceat`` /
``np.repeat`` when values are laid out item by item (offsets, or a sorted
``group_index``), ``ufunc.at`` / ``np.bincount`` / fancy indexing otherwise.
Nothing sorts and nothing loops per item.

Reductions (``REDUCTIONS``, build one with ``get_reduction(name, **params)``):

- ``max`` / ``min`` / ``mean`` / ``sum``.
- ``topk_mean(k)``: mean of the ``k`` largest values (all of them if fewer);
  ``k`` passes of per-item max, ties counted correctly.
- ``softmax(temperature)``: smooth max, the softmax-weighted mean
  ``sum v e^(v/T) / sum e^(v/T)``; tends to ``max`` as ``T -> 0`` and to
  ``mean`` as ``T -> inf``, and stays inside ``[min, max]`` of the group.
- ``softmin(temperature)``: the same with ``e^(-v/T)``; tends to ``min``.

Empty groups (an item with no regions) have no evidence; they get
``empty_value`` (default 0.0, "nothing to be unsure about"). The task policies
in ``engine.sampling.policies`` override that where it is wrong: an image with
no detections at all is a blind spot, not a certainty, and defaults to 1.0.
Non-finite values raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.sampling._validate import (
    Float64Array,
    IndexArray,
    as_float_array,
    as_index_array,
    check_positive,
)

REDUCTION_NAMES: tuple[str, ...] = (
    "max",
    "min",
    "mean",
    "sum",
    "topk_mean",
    "softmax",
    "softmin",
)


class Groups:
    """Who owns which value: item ``index[j]`` owns ``values[j]``; ``n_items`` items."""

    def __init__(self, index: IndexArray, n_items: int, offsets: IndexArray | None) -> None:
        self.index = index
        self.n_items = n_items
        self.offsets = offsets  # set when values are laid out item by item
        self.counts: IndexArray = (
            np.diff(offsets) if offsets is not None else np.bincount(index, minlength=n_items)
        )

    def max(self, values: Float64Array) -> Float64Array:
        """Per-item max; ``-inf`` for empty items."""
        out = np.full(self.n_items, -np.inf)
        if self.offsets is None:
            np.maximum.at(out, self.index, values)
            return out
        nonempty = self.counts > 0
        if nonempty.any():
            out[nonempty] = np.maximum.reduceat(values, self.offsets[:-1][nonempty])
        return out

    def sum(self, values: Float64Array) -> Float64Array:
        """Per-item sum; 0 for empty items."""
        out = np.bincount(self.index, weights=values, minlength=self.n_items)
        return out.astype(np.float64, copy=False)

    def expand(self, per_item: Float64Array) -> Float64Array:
        """Broadcast one value per item back to every member (``float[n]``)."""
        if self.offsets is None:
            return per_item[self.index]
        return np.repeat(per_item, self.counts)


def make_groups(
    values: npt.ArrayLike,
    group_index: npt.ArrayLike | None = None,
    *,
    n_items: int | None = None,
    offsets: npt.ArrayLike | None = None,
) -> tuple[Float64Array, Groups]:
    """Validate flat ``values`` (as float64) and their grouping."""
    vals = as_float_array(values, "values").astype(np.float64, copy=False)
    if vals.ndim != 1:
        raise ValueError(f"values must be 1-D [n], got shape {vals.shape}")
    if (group_index is None) == (offsets is None):
        raise ValueError("pass exactly one of group_index (with n_items) or offsets")
    if offsets is not None:
        bounds = _check_offsets(offsets, len(vals))
        index = np.repeat(np.arange(len(bounds) - 1, dtype=np.intp), np.diff(bounds))
        return vals, Groups(index, len(bounds) - 1, bounds)
    if group_index is None:
        raise ValueError("group_index is required without offsets")
    if n_items is None or isinstance(n_items, bool) or int(n_items) < 0:
        raise ValueError(f"n_items must be a non-negative integer with group_index, got {n_items}")
    n_items = int(n_items)
    index = as_index_array(group_index, "group_index", n_items)
    if len(index) != len(vals):
        raise ValueError(f"group_index has {len(index)} entries for {len(vals)} values")
    groups = Groups(index, n_items, None)
    if len(index) < 2 or not (index[1:] < index[:-1]).any():
        bounds = np.zeros(n_items + 1, dtype=np.intp)
        np.cumsum(groups.counts, out=bounds[1:])
        groups = Groups(index, n_items, bounds)
    return vals, groups


def _check_offsets(offsets: npt.ArrayLike, n_values: int) -> IndexArray:
    arr = np.asarray(offsets)
    if arr.ndim != 1 or len(arr) < 1 or arr.dtype.kind not in "iu":
        raise ValueError("offsets must be a 1-D integer array [n_items + 1]")
    if arr[0] != 0 or arr[-1] != n_values:
        raise ValueError(f"offsets must start at 0 and end at len(values)={n_values}")
    if (np.diff(arr) < 0).any():
        raise ValueError("offsets must be non-decreasing")
    return arr.astype(np.intp, copy=False)


def _topk_mean(values: Float64Array, groups: Groups, k: int) -> Float64Array:
    """Mean of the ``k`` largest per item: peel off each item's current max ``k`` times."""
    need = np.minimum(groups.counts, k).astype(np.float64)
    if k == 1:
        return groups.max(values)
    if (groups.counts <= k).all():
        return groups.sum(values) / need
    remaining = values.copy()
    total = np.zeros(groups.n_items)
    for _ in range(k):
        top = groups.max(remaining)
        top[need <= 0] = np.nan  # done or empty: match nothing below
        is_top = remaining == groups.expand(top)
        take = np.minimum(groups.sum(is_top.astype(np.float64)), need)
        total += np.where(take > 0, top * take, 0.0)
        need -= take
        if not (need > 0).any():
            break
        remaining[is_top] = -np.inf
    return total / np.minimum(groups.counts, k)


def _boltzmann(values: Float64Array, groups: Groups, temperature: float) -> Float64Array:
    """Softmax-weighted mean ``sum v e^(v/T) / sum e^(v/T)`` per item (max-shifted, stable)."""
    top = groups.max(values)
    weights = np.exp((values - groups.expand(top)) / temperature)
    return groups.sum(weights * values) / groups.sum(weights)


@dataclass(frozen=True)
class Reduction:
    """A named per-item reduction; ``k`` is used by ``topk_mean``, ``temperature`` by soft ones."""

    name: str = "max"
    k: int = 3
    temperature: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in REDUCTION_NAMES:
            raise ValueError(f"unknown reduction {self.name!r}; choose one of {REDUCTION_NAMES}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"topk_mean k must be an integer >= 1, got {self.k!r}")
        check_positive(self.temperature, "temperature")

    def reduce_grouped(
        self, values: Float64Array, groups: Groups, empty_value: float = 0.0
    ) -> Float64Array:
        """One value per item; ``empty_value`` for items with no values."""
        empty_value = float(empty_value)
        if not np.isfinite(empty_value):
            raise ValueError(f"empty_value must be finite, got {empty_value}")
        with np.errstate(invalid="ignore", divide="ignore"):
            out = self._reduce(values, groups)
        out[groups.counts == 0] = empty_value
        return out

    def _reduce(self, values: Float64Array, groups: Groups) -> Float64Array:
        if self.name == "max":
            return groups.max(values)
        if self.name == "min":
            return -groups.max(-values)
        if self.name == "sum":
            return groups.sum(values)
        if self.name == "mean":
            return groups.sum(values) / groups.counts
        if self.name == "topk_mean":
            return _topk_mean(values, groups, self.k)
        if self.name == "softmax":
            return _boltzmann(values, groups, self.temperature)
        return -_boltzmann(-values, groups, self.temperature)

    def __call__(
        self,
        values: npt.ArrayLike,
        group_index: npt.ArrayLike | None = None,
        *,
        n_items: int | None = None,
        offsets: npt.ArrayLike | None = None,
        empty_value: float = 0.0,
    ) -> Float64Array:
        """Reduce flat ``values`` to ``float64[n_items]`` (see the module docstring)."""
        vals, groups = make_groups(values, group_index, n_items=n_items, offsets=offsets)
        return self.reduce_grouped(vals, groups, empty_value)


def _factory(name: str) -> Callable[..., Reduction]:
    def build(**params: float) -> Reduction:
        return Reduction(name, **params)  # type: ignore[arg-type]

    return build


REDUCTIONS: dict[str, Callable[..., Reduction]] = {name: _factory(name) for name in REDUCTION_NAMES}


def get_reduction(name: str | Reduction, **params: float) -> Reduction:
    """A ``Reduction`` by name, e.g. ``get_reduction("topk_mean", k=2)``; passes one through."""
    if isinstance(name, Reduction):
        if params:
            raise ValueError("pass parameters either in the Reduction or by name, not both")
        return name
    if name not in REDUCTIONS:
        raise ValueError(f"unknown reduction {name!r}; choose one of {REDUCTION_NAMES}")
    return REDUCTIONS[name](**params)


def reduce_groups(
    values: npt.ArrayLike,
    group_index: npt.ArrayLike | None = None,
    *,
    n_items: int | None = None,
    offsets: npt.ArrayLike | None = None,
    reduction: str | Reduction = "max",
    empty_value: float = 0.0,
) -> Float64Array:
    """Reduce ``values`` per item: ``get_reduction(reduction)(values, group_index, ...)``."""
    return get_reduction(reduction)(
        values, group_index, n_items=n_items, offsets=offsets, empty_value=empty_value
    )
