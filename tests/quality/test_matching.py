"""Region and span matching against IoUs and F1 scores worked out by hand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from engine.quality.matching import labels_agree, match, region_iou, span_f1
from engine.types import Box, Mask, Region, Span


@dataclass(frozen=True)
class L:
    label: str
    region: Region | None


def _mask(x1: int, x2: int) -> Mask:
    grid = np.zeros((10, 20), dtype=np.uint8, order="F")
    grid[:, x1:x2] = 1
    rle = mask_utils.encode(np.asfortranarray(grid))
    return Mask(rle["counts"].decode(), 10, 20, Box(x1, 0, x2, 10))


def test_box_and_mask_iou_by_hand() -> None:
    a, b = Box(0, 0, 10, 10), Box(5, 0, 15, 10)  # overlap 50, union 150
    assert region_iou(a, b) == pytest.approx(1 / 3)
    assert region_iou(a, Box(0, 0, 10, 5)) == pytest.approx(0.5)
    assert region_iou(_mask(0, 10), _mask(5, 15)) == pytest.approx(1 / 3)  # 50 / 150 px
    assert region_iou(Span(0, 10), Span(5, 15)) == pytest.approx(5 / 15)
    assert region_iou(None, None) == 1.0
    assert region_iou(Span(0, 4), Box(0, 0, 1, 1)) == 0.0


def test_hungarian_matching_pairs_the_right_boxes_and_counts_the_rest() -> None:
    first = [L("car", Box(0, 0, 10, 10)), L("car", Box(20, 0, 30, 10)), L("dog", Box(0, 0, 4, 4))]
    # Listed in the other order, slightly moved; the dog is a cat here (label mismatch).
    second = [L("car", Box(21, 0, 31, 10)), L("car", Box(1, 0, 11, 10)), L("cat", Box(0, 0, 4, 4))]
    m = match(first, second)
    assert sorted((i, j) for i, j, _ in m.pairs) == [(0, 1), (1, 0)]
    # each car pair: overlap 9 x 10 = 90 px, union 110 px -> IoU 9/11; Dice 2*90/200 = 0.9
    assert m.mean_iou == pytest.approx(9 / 11)
    assert m.mean_dice == pytest.approx(0.9)
    assert (m.unmatched_first, m.unmatched_second) == (1, 1)
    assert not m.complete
    assert labels_agree(first[:2], second[:2])
    assert not labels_agree(first[:1], [L("car", Box(5, 0, 15, 10))])  # IoU 1/3 < 0.5


def test_whole_item_labels_agree_by_name() -> None:
    assert labels_agree([L("cat", None)], [L("cat", None)])
    assert not labels_agree([L("cat", None)], [L("dog", None)])
    assert labels_agree([], [])


def test_span_f1_exact_and_overlap_by_hand() -> None:
    predicted = [L("PER", Span(0, 5)), L("LOC", Span(10, 15))]
    reference = [L("PER", Span(0, 5)), L("LOC", Span(10, 14)), L("ORG", Span(20, 25))]
    exact = span_f1(predicted, reference)
    # exact: 1 match -> P 1/2, R 1/3, F1 2 * (1/6) / (5/6) = 0.4
    assert (exact.precision, exact.recall, exact.f1) == pytest.approx((0.5, 1 / 3, 0.4))
    loose = span_f1(predicted, reference, overlap=True)
    # overlap: 2 matches -> P 1, R 2/3, F1 0.8
    assert (loose.precision, loose.recall, loose.f1) == pytest.approx((1.0, 2 / 3, 0.8))
    with pytest.raises(ValueError, match="span regions"):
        span_f1([L("PER", Box(0, 0, 1, 1))], reference)
