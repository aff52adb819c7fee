"""Agreement between people: Fleiss' kappa, Cohen's kappa, Krippendorff's alpha.

Standard definitions from well-kept libraries (statsmodels, scikit-learn,
``krippendorff``); this module only shapes the data and names the verdict.
Thresholds follow the seed documents: kappa above 0.8 is excellent, below 0.6
means "clarify the instructions before you go on".
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np

EXCELLENT_ABOVE = 0.8
CLARIFY_BELOW = 0.6
Verdict = Literal["excellent", "good", "clarify", "n/a"]


def verdict_of(kappa: float | None) -> Verdict:
    """``excellent`` (> 0.8), ``clarify`` (< 0.6), ``good`` between; ``n/a`` for none."""
    if kappa is None or not math.isfinite(kappa):
        return "n/a"
    if kappa > EXCELLENT_ABOVE:
        return "excellent"
    if kappa < CLARIFY_BELOW:
        return "clarify"
    return "good"


def category_table(ratings: Sequence[Sequence[Hashable]]) -> tuple[np.ndarray, list[Hashable]]:
    """``ratings[i]``: the categories the raters gave item ``i`` (same count per item)
    -> the items x categories count table Fleiss' kappa reads, and the categories."""
    if not ratings:
        raise ValueError("no items to compare")
    raters = len(ratings[0])
    if raters < 2 or any(len(r) != raters for r in ratings):
        raise ValueError("every item needs the same number (>= 2) of ratings")
    categories = sorted({c for row in ratings for c in row}, key=repr)
    column = {c: j for j, c in enumerate(categories)}
    table = np.zeros((len(ratings), len(categories)), dtype=np.int64)
    for i, row in enumerate(ratings):
        for c in row:
            table[i, column[c]] += 1
    return table, categories


def fleiss_kappa(table: np.ndarray) -> float | None:
    """Fleiss (1971) kappa of an items x categories count table (equal raters per row).

    ``None`` when undefined: one category only (chance agreement is 1).
    """
    from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

    counts = np.asarray(table, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ValueError("table must be a non-empty items x categories matrix")
    per_item = counts.sum(axis=1)
    if np.any(per_item != per_item[0]) or per_item[0] < 2:
        raise ValueError("every item needs the same number (>= 2) of ratings")
    shares = counts.sum(axis=0) / counts.sum()
    if float(np.sum(shares**2)) >= 1.0 - 1e-12:
        return None
    return float(_fleiss(counts, method="fleiss"))


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters over the same items; ``None`` when undefined."""
    from sklearn.metrics import cohen_kappa_score

    if len(first) != len(second) or not first:
        raise ValueError("two raters need the same, non-zero number of ratings")
    a, b = [repr(v) for v in first], [repr(v) for v in second]
    if len(set(a) | set(b)) < 2:
        return None
    value = float(cohen_kappa_score(a, b))
    return value if math.isfinite(value) else None


def krippendorff_alpha(ratings: Sequence[Sequence[Hashable | None]]) -> float | None:
    """Nominal Krippendorff's alpha; ``ratings[r][i]`` is rater ``r`` on item ``i``,
    ``None`` where that rater did not rate it. ``None`` when undefined."""
    import krippendorff

    if len(ratings) < 2 or not ratings[0]:
        raise ValueError("alpha needs >= 2 raters and >= 1 item")
    values = sorted({v for row in ratings for v in row if v is not None}, key=repr)
    if len(values) < 2:
        return None
    code = {v: float(j) for j, v in enumerate(values)}
    data = np.array(
        [[np.nan if v is None else code[v] for v in row] for row in ratings], dtype=np.float64
    )
    pairable = np.sum(~np.isnan(data), axis=0) >= 2
    if not pairable.any():
        return None
    value = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    return value if math.isfinite(value) else None
