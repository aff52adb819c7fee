"""Click -> box rule, prompt resolution, mask quality scores and RLE helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils.amg import calculate_stability_score

from engine.imaging.masks import decode_rle, encode_rle, mask_box_xyxy, mask_iou, mask_to_region
from engine.models.sam.prompts import box_around_point, resolve_prompt
from engine.models.sam.results import disagreement, stability_scores


def test_default_box_is_a_clipped_square_of_a_quarter_of_the_short_side() -> None:
    box, source = box_around_point([100, 50], (200, 400))
    assert source == "default"
    assert box.tolist() == [75.0, 25.0, 125.0, 75.0]
    corner, _ = box_around_point([0, 199], (200, 400))
    assert corner.tolist() == [0.0, 174.0, 25.0, 200.0]
    several, _ = box_around_point([[100, 50], [140, 60]], (200, 400))
    assert several.tolist() == [75.0, 25.0, 165.0, 85.0]


def test_smallest_containing_candidate_wins() -> None:
    candidates = [[0, 0, 400, 200], [90, 40, 150, 70], [95, 45, 110, 60], [200, 0, 300, 100]]
    box, source = box_around_point([100, 50], (200, 400), candidates)
    assert source == "detector" and box.tolist() == [95.0, 45.0, 110.0, 60.0]
    box, _ = box_around_point([[100, 50], [140, 60]], (200, 400), candidates)
    assert box.tolist() == [90.0, 40.0, 150.0, 70.0]
    box, source = box_around_point([350, 150], (200, 400), candidates[1:])
    assert source == "default"
    with pytest.raises(ValueError, match="outside the image"):
        box_around_point([500, 10], (200, 400))


def test_resolve_prompt_sources() -> None:
    kwargs = {"image_hw": (200, 400)}
    pts, labels = [[10, 10], [20, 20]], [1, 0]
    assert (
        resolve_prompt(pts, labels, None, accepts_point_prompts=True, **kwargs).source == "points"
    )
    both = resolve_prompt(pts, labels, [0, 0, 30, 30], accepts_point_prompts=True, **kwargs)
    assert both.source == "points+box" and both.points_xy is not None
    boxed = resolve_prompt(pts, labels, [0, 0, 30, 30], accepts_point_prompts=False, **kwargs)
    assert boxed.source == "box" and boxed.points_xy is None
    derived = resolve_prompt(pts, labels, None, accepts_point_prompts=False, **kwargs)
    assert derived.source == "derived_box:default" and derived.points_xy is None
    assert derived.box_xyxy is not None and derived.box_xyxy.tolist() == [0.0, 0.0, 35.0, 35.0]


def test_stability_score_matches_segment_anything() -> None:
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 2, (2, 3, 40, 50)).astype(np.float32))
    ours = stability_scores(logits, 0.0)
    theirs = calculate_stability_score(logits, 0.0, 1.0)
    assert torch.allclose(ours.float(), theirs, atol=1e-6)
    assert stability_scores(torch.full((1, 1, 4, 4), -5.0), 0.0).item() == 0.0


def test_disagreement_is_one_minus_mean_pairwise_iou() -> None:
    masks = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    masks[0, :, :2] = True  # three identical masks
    masks[1, 0, 0, :2] = True  # 2 px
    masks[1, 1, 0, :] = True  # 4 px, contains mask 0
    masks[1, 2, 3, :] = True  # disjoint from both
    values = disagreement(masks)
    assert values[0].item() == pytest.approx(0.0)
    assert values[1].item() == pytest.approx(1.0 - (0.5 + 0.0 + 0.0) / 3)


def test_rle_round_trip_and_box() -> None:
    rng = np.random.default_rng(2)
    mask = rng.random((37, 53)) > 0.7
    assert np.array_equal(decode_rle(encode_rle(mask), 37, 53), mask)
    small = np.zeros((10, 20), dtype=bool)
    small[3:5, 7:12] = True
    region = mask_to_region(small)
    assert region.box.box_xyxy == (7.0, 3.0, 12.0, 5.0) == mask_box_xyxy(small)
    assert (region.height_px, region.width_px) == (10, 20)
    assert mask_box_xyxy(np.zeros((4, 4), dtype=bool)) == (0.0, 0.0, 0.0, 0.0)
    assert mask_iou(small, small) == 1.0 and mask_iou(small, ~small) == 0.0
    with pytest.raises(ValueError, match="bool"):
        encode_rle(small.astype(np.uint8))
