"""YOLO test-time augmentation: parsing, box mapping, matching, the signals, the detector.

Real yolo11n weights (disagreement on an ambiguous photo) are in test_yolo_signals_real.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tiny_models import image_items, random_images, tiny_yolo

from engine.models.letterbox import plan_letterbox
from engine.models.yolo import YoloDetector
from engine.models.yolo_tta import (
    Augmentation,
    augmented_inputs,
    match_pass,
    parse_tta,
    to_base_pixels,
    tta_disagreement,
    tta_signals,
    with_tta,
)
from engine.types import Box, Prediction, Suggestion

NUM_CLASSES = 5
SIZES = ((50, 80), (120, 60), (97, 97), (50, 80))
TTA = ["hflip", "scale:0.75", "hflip+scale:1.25"]


def _tiny(**options: object) -> YoloDetector:
    import torch

    torch.manual_seed(0)  # the same random weights in every build
    return tiny_yolo(
        num_classes=NUM_CLASSES,
        conf_floor=0.0,
        imgsz_px=128,
        max_det=30,
        channels_last=False,
        **options,
    )


# -- parsing -------------------------------------------------------------------------


def test_parse_tta_normalises_names_and_rejects_bad_entries() -> None:
    assert parse_tta(None) == () == parse_tta([])
    parsed = parse_tta(["hflip", "scale:0.83", "scale:1.2+hflip"])
    assert [a.name for a in parsed] == ["hflip", "scale:0.83", "hflip+scale:1.2"]
    assert parsed[2] == Augmentation("hflip+scale:1.2", hflip=True, scale=1.2)
    for bad, message in [
        ("hflip", "list of augmentations"),
        (["vflip"], "unknown tta augmentation"),
        (["scale:x"], "needs a number"),
        (["scale:1"], "not 1"),
        (["scale:9"], r"\[0.25, 4.0\]"),
        (["hflip", "hflip"], "twice"),
        (["hflip+hflip"], "unknown"),
        ([""], "non-empty"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_tta(bad)  # type: ignore[arg-type]


def test_scaled_passes_letterbox_at_a_stride_multiple() -> None:
    images = [np.zeros((60, 100, 3), np.uint8), np.zeros((90, 30, 3), np.uint8)]
    augs = parse_tta(["hflip", "scale:0.83"])
    inputs, frames = augmented_inputs(augs, images, 640, 32, square=True)
    assert len(inputs) == len(frames) == 4  # augmentation-major
    assert [f.canvas_shape for f in frames] == [(640, 640)] * 2 + [(544, 544)] * 2
    np.testing.assert_array_equal(inputs[0], images[0][:, ::-1])
    assert inputs[2] is images[0]


def test_flipped_boxes_map_back_to_the_original_image() -> None:
    frame = plan_letterbox(100, 200, 64, 32, square=True)  # scale 0.32, 16 px pad top
    canvas_box = np.array([[0.0, 16.0, 32.0, 48.0], [10.0, 20.0, 10.0, 30.0]])  # 2nd: empty
    rows = np.array([[0.2, 1.5], [0.1, 0.3]], dtype=np.float32)
    boxes, kept = to_base_pixels(canvas_box, rows, frame, hflip=True)
    np.testing.assert_allclose(boxes, [[100.0, 0.0, 200.0, 100.0]])  # left half -> right half
    np.testing.assert_allclose(kept, [[0.2, 1.0]])  # clipped to [0, 1] as the base rows


# -- matching and signals -----------------------------------------------------------


def test_matching_needs_half_iou_and_prefers_the_same_top_class() -> None:
    base = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], dtype=float)
    other = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [52, 52, 70, 70]], dtype=float)
    match, iou = match_pass(base, np.array([1, 0]), other, np.array([0, 1, 0]))
    assert match.tolist() == [1, -1]  # same class at IoU 0.9 beats the exact box; IoU 0.14 < 0.5
    assert iou[0] == pytest.approx(0.9) and iou[1] == 0.0


def test_signals_of_identical_missing_and_reclassified_passes() -> None:
    boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], dtype=float)
    rows = np.array([[0.9, 0.1], [0.2, 0.6]], dtype=np.float32)
    swapped = rows[:, ::-1].copy()
    signals = tta_signals(boxes, rows, [(boxes, rows), (boxes[:0], rows[:0]), (boxes, swapped)])
    assert signals["tta_probs"].shape == (3, 2, 2)
    np.testing.assert_array_equal(signals["tta_probs"][0], rows)
    np.testing.assert_array_equal(signals["tta_probs"][1], 0.0)
    # base + pass 0 agree, pass 1 finds nothing, pass 2 has the other top class
    np.testing.assert_allclose(signals["tta_variation_ratio"], [0.5, 0.5])
    np.testing.assert_allclose(signals["tta_iou_spread"], [1 / 3, 1 / 3], rtol=1e-6)
    same = tta_signals(boxes, rows, [(boxes, rows)] * 2)
    np.testing.assert_array_equal(same["tta_variation_ratio"], 0.0)
    empty = tta_signals(boxes[:0], rows[:0], [(boxes, rows)])
    assert empty["tta_probs"].shape == (1, 0, 2) and empty["tta_iou_spread"].shape == (0,)


def _prediction(scores: list[float]) -> Prediction:
    rows = np.array([[s, 0.0] for s in scores], dtype=np.float32).reshape(-1, 2)
    suggestions = tuple(
        Suggestion("a", s, Box(0, 0, 10 + i, 10), "m", "v", {"class_index": 0})
        for i, s in enumerate(scores)
    )
    return Prediction("i", "m", "v", suggestions, rows, ("a", "b"))


def test_with_tta_adds_signals_and_attributes_and_changes_nothing_else() -> None:
    base = _prediction([0.9, 0.3, 0.05])
    boxes = np.array([s.region.box_xyxy for s in base.suggestions if isinstance(s.region, Box)])
    out = with_tta(base, [(boxes[:1], base.probs[:1])])
    assert [s.attributes["tta_variation_ratio"] for s in out.suggestions] == [0.0, 0.5, 0.5]
    assert out.suggestions[1].attributes["tta_iou_spread"] == 1.0
    assert out.suggestions[0].attributes["class_index"] == 0
    np.testing.assert_array_equal(out.probs, base.probs)
    assert [dataclasses.replace(s, attributes={}) for s in out.suggestions] == [
        dataclasses.replace(s, attributes={}) for s in base.suggestions
    ]
    # shown boxes (>= 0.25): 0.9 agrees (0), 0.3 is lost ((0.5 + 1) / 2), weighted by score
    assert tta_disagreement(out) == pytest.approx(0.3 * 0.75 / 1.2, rel=1e-6)
    assert tta_disagreement(base) == 0.0  # no signals
    lonely = with_tta(_prediction([0.1]), [(boxes[:0], base.probs[:0])])
    assert tta_disagreement(lonely) == pytest.approx(0.75)  # none shown: every box counts


# -- the detector ---------------------------------------------------------------------


@pytest.mark.parametrize("letterbox_mode", ["rect", "square"])
def test_tta_adds_batched_signals_and_keeps_the_base_prediction(letterbox_mode: str) -> None:
    plain, tta = _tiny(letterbox_mode=letterbox_mode), _tiny(letterbox_mode=letterbox_mode, tta=TTA)
    images = random_images(np.random.default_rng(3), SIZES)
    items = image_items(len(images))
    before, after = plain.predict(items, images), tta.predict(items, images)
    for p, q in zip(before, after, strict=True):
        n = len(q.suggestions)
        assert n > 0 and not p.signals
        np.testing.assert_array_equal(p.probs, q.probs)
        np.testing.assert_array_equal(p.embedding, q.embedding)
        assert [s.region for s in p.suggestions] == [s.region for s in q.suggestions]
        assert q.signals["tta_probs"].shape == (len(TTA), n, NUM_CLASSES)
        assert q.signals["tta_probs"].dtype == np.float32
        for name in ("tta_variation_ratio", "tta_iou_spread"):
            values = q.signals[name]
            assert values.shape == (n,) and ((values >= 0) & (values <= 1)).all()
            assert [s.attributes[name] for s in q.suggestions] == pytest.approx(values.tolist())
        assert (q.signals["tta_variation_ratio"] <= len(TTA) / (len(TTA) + 1) + 1e-6).all()
    alone = tta.predict(items[1:2], images[1:2])[0]  # values: test_yolo_signals_real.py
    assert alone.signals["tta_probs"].shape == after[1].signals["tta_probs"].shape
    assert tta.config()["tta"] == TTA and "tta" not in plain.config()
    assert tta.version != plain.version


def test_tta_runs_one_forward_per_canvas_shape() -> None:
    detector = _tiny(letterbox_mode="square", tta=["hflip", "scale:0.75"])
    batch = detector.preprocess(image_items(3), random_images(np.random.default_rng(1), SIZES[:3]))
    assert [len(p) for p, _ in batch.groups] == [3]
    assert sorted(len(p) for p, _ in batch.tta_groups) == [3, 3]  # 128 px (hflip), 96 px
    assert len(batch.tta_frames) == 6
