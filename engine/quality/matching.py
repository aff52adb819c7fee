"""Regions matched across people: IoU, Hungarian matching, Dice, span F1.

Two labels can match only when their label names are equal. Their overlap is
the IoU of their regions: boxes and masks through pycocotools (a mask against a
box compares the mask's box), spans as character ranges, whole-item labels (no
region) 1.0 when both have none. A set of labels is matched one-to-one to
another by the Hungarian algorithm (scipy) on IoU, keeping pairs at or above
the threshold (0.5 by default, as in COCO's AP50).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.types import Box, Mask, Region, Span

MATCH_IOU = 0.5


class Labeled(Protocol):
    @property
    def label(self) -> str: ...

    @property
    def region(self) -> Region | None: ...


def _box_xywh(box: Box) -> list[float]:
    return [box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1]


def region_iou(a: Region | None, b: Region | None) -> float:
    """Intersection over union of two regions of one item (0.0 when kinds differ)."""
    from pycocotools import mask as mask_utils

    if a is None or b is None:
        return 1.0 if a is None and b is None else 0.0
    if isinstance(a, Span) or isinstance(b, Span):
        if not (isinstance(a, Span) and isinstance(b, Span)):
            return 0.0
        inter = max(0, min(a.end, b.end) - max(a.start, b.start))
        union = (a.end - a.start) + (b.end - b.start) - inter
        return inter / union
    if isinstance(a, Mask) and isinstance(b, Mask):
        rles = [{"counts": m.mask_rle.encode(), "size": [m.height_px, m.width_px]} for m in (a, b)]
        return float(mask_utils.iou([rles[0]], [rles[1]], [0])[0][0])
    box_a = a.box if isinstance(a, Mask) else a
    box_b = b.box if isinstance(b, Mask) else b
    if box_a.area_px <= 0 and box_b.area_px <= 0:
        return 1.0 if box_a == box_b else 0.0
    return float(mask_utils.iou([_box_xywh(box_a)], [_box_xywh(box_b)], [0])[0][0])


@dataclass(frozen=True)
class Matching:
    """``pairs[i] = (index in first, index in second, IoU)``; the rest is unmatched."""

    pairs: tuple[tuple[int, int, float], ...]
    unmatched_first: int
    unmatched_second: int

    @property
    def mean_iou(self) -> float | None:
        return float(np.mean([iou for *_, iou in self.pairs])) if self.pairs else None

    @property
    def mean_dice(self) -> float | None:
        """Dice of each matched pair from its IoU: ``2 IoU / (1 + IoU)``."""
        if not self.pairs:
            return None
        return float(np.mean([2 * iou / (1 + iou) for *_, iou in self.pairs]))

    @property
    def complete(self) -> bool:
        return self.unmatched_first == 0 and self.unmatched_second == 0


def match(
    first: Sequence[Labeled], second: Sequence[Labeled], *, min_iou: float = MATCH_IOU
) -> Matching:
    """One-to-one matching of two label sets by IoU (same label name only)."""
    from scipy.optimize import linear_sum_assignment

    if not first or not second:
        return Matching((), len(first), len(second))
    ious = np.zeros((len(first), len(second)), dtype=np.float64)
    for i, a in enumerate(first):
        for j, b in enumerate(second):
            if a.label == b.label:
                ious[i, j] = region_iou(a.region, b.region)
    rows, cols = linear_sum_assignment(-ious)
    pairs = tuple(
        (int(i), int(j), float(ious[i, j]))
        for i, j in zip(rows, cols, strict=True)
        if ious[i, j] >= min_iou and ious[i, j] > 0
    )
    return Matching(pairs, len(first) - len(pairs), len(second) - len(pairs))


def labels_agree(first: Sequence[Labeled], second: Sequence[Labeled]) -> bool:
    """Both people gave the same labels: every label matched, none left over."""
    return match(first, second).complete


@dataclass(frozen=True)
class SpanScores:
    precision: float
    recall: float
    f1: float


def _scores(matched: int, predicted: int, reference: int) -> SpanScores:
    precision = matched / predicted if predicted else (1.0 if not reference else 0.0)
    recall = matched / reference if reference else (1.0 if not predicted else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return SpanScores(precision, recall, f1)


def span_f1(
    predicted: Sequence[Labeled], reference: Sequence[Labeled], *, overlap: bool = False
) -> SpanScores:
    """Entity-level precision / recall / F1 of ``predicted`` spans against ``reference``.

    Exact: same label and same offsets. ``overlap``: same label and any shared
    character, matched one-to-one.
    """
    for lab in (*predicted, *reference):
        if not isinstance(lab.region, Span):
            raise ValueError(f"span_f1 needs span regions, got {lab.region!r}")
    if overlap:
        matched = len(match(predicted, reference, min_iou=1e-9).pairs)
    else:
        want = {(r.label, r.region.start, r.region.end) for r in reference}  # type: ignore[union-attr]
        got = {(p.label, p.region.start, p.region.end) for p in predicted}  # type: ignore[union-attr]
        matched = len(want & got)
    return _scores(matched, len(predicted), len(reference))
