"""Test-time augmentation for the YOLO detector: extra passes that only add signals.

Opt-in with the model param ``tta`` (or the pre-label job key ``tta``): a list
of augmentations, each ``hflip``, ``scale:<factor>`` or both joined by ``+``
(``["hflip", "scale:0.83", "scale:1.2"]``). ``scale:f`` letterboxes the
original image with its longest side ``f * imgsz_px`` (rounded to the stride;
in ``square`` mode the canvas is that size too). All augmented copies of a
batch that share a canvas shape run in one forward.

Each pass's boxes go through the same NMS, back to original pixels (and
unflipped), and are matched one-to-one to the base pass's boxes
(``match_pass``: Hungarian, pairs need IoU >= ``MATCH_IOU``; among those a
pair whose top classes agree is preferred, then the higher IoU). For the
base prediction's n boxes (its order) and T augmented passes:

- ``tta_probs`` ``[T, n, n_classes]``: the matched box's class row per pass,
  zeros where the pass has no match, and zeros for base boxes whose best class
  scores under ``KEEP_ROWS_MIN`` (kept for ranking only down to there: most of
  the up to 300 candidates are such, and their rows would make a stored
  prediction ~100x larger; the store compresses the zeros away);
- ``tta_variation_ratio`` ``[n]``: ``1 - agreeing / (T + 1)``: of the T + 1
  passes (the base pass agrees with itself), how many fail to give a box of
  the base box's top class (a pass without a match disagrees); at most
  ``T / (T + 1)``;
- ``tta_iou_spread`` ``[n]``: ``1 - mean IoU`` of the T matches (no match
  counts 0): 1.0 when no augmented pass found the box.

The per-box values are also the suggestions' attributes of those names.
Boxes, labels, scores and ``probs`` are the base pass's, unchanged.
``tta_disagreement`` reduces a prediction to one item-level number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.models.letterbox import LetterboxFrame, plan_letterbox, to_original_pixels
from engine.types import Box, Prediction

MATCH_IOU = 0.5
SHOWN_SCORE = 0.25  # ultralytics' default display confidence
_SCALE_RANGE = (0.25, 4.0)

Array = npt.NDArray[np.floating]


@dataclass(frozen=True)
class Augmentation:
    """One augmented pass: an optional horizontal flip, then a letterbox at ``scale``."""

    name: str
    hflip: bool = False
    scale: float = 1.0

    def imgsz_px(self, imgsz_px: int, stride_px: int) -> int:
        return max(stride_px, round(imgsz_px * self.scale / stride_px) * stride_px)


def parse_tta(spec: Sequence[str] | None) -> tuple[Augmentation, ...]:
    """``["hflip", "scale:0.83", "hflip+scale:1.2"]`` -> augmentations; ``None`` / ``[]``: none."""
    if spec is None:
        return ()
    if isinstance(spec, str) or not isinstance(spec, Sequence):
        raise ValueError(f"tta must be a list of augmentations, got {spec!r}")
    out: list[Augmentation] = []
    for entry in spec:
        augmentation = _parse_one(entry)
        if augmentation in out:
            raise ValueError(f"tta lists {entry!r} twice")
        out.append(augmentation)
    return tuple(out)


def _parse_one(entry: object) -> Augmentation:
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError(f"a tta augmentation must be a non-empty string, got {entry!r}")
    hflip, scale = False, 1.0
    for part in entry.replace(" ", "").split("+"):
        if part == "hflip" and not hflip:
            hflip = True
        elif part.startswith("scale:") and scale == 1.0:
            try:
                scale = float(part.removeprefix("scale:"))
            except ValueError:
                raise ValueError(f"tta {entry!r}: scale needs a number, e.g. scale:0.83") from None
            low, high = _SCALE_RANGE
            if not low <= scale <= high or scale == 1.0:
                raise ValueError(f"tta {entry!r}: scale must be in [{low}, {high}] and not 1")
        else:
            raise ValueError(
                f"unknown tta augmentation {entry!r}; use hflip, scale:<factor> or both joined by +"
            )
    name = "+".join(p for p in ("hflip" if hflip else "", _scale(scale)) if p)
    return Augmentation(name=name, hflip=hflip, scale=scale)


def _scale(scale: float) -> str:
    return "" if scale == 1.0 else f"scale:{scale:g}"


def augmented_inputs(
    augmentations: Sequence[Augmentation],
    images: Sequence[np.ndarray],
    imgsz_px: int,
    stride_px: int,
    *,
    square: bool,
) -> tuple[list[np.ndarray], list[LetterboxFrame]]:
    """Every (augmentation, image) pair, augmentation-major: images and their letterboxes."""
    inputs: list[np.ndarray] = []
    frames: list[LetterboxFrame] = []
    for augmentation in augmentations:
        size = augmentation.imgsz_px(imgsz_px, stride_px)
        for image in images:
            height, width = image.shape[:2]
            inputs.append(np.ascontiguousarray(image[:, ::-1]) if augmentation.hflip else image)
            frames.append(plan_letterbox(height, width, size, stride_px, square=square))
    return inputs, frames


def to_base_pixels(
    boxes_xyxy: np.ndarray, rows: np.ndarray, frame: LetterboxFrame, hflip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """An augmented pass's canvas boxes -> original, unflipped pixels; empty boxes dropped."""
    boxes = to_original_pixels(boxes_xyxy, frame)
    if hflip:
        boxes = np.stack(
            (frame.width_px - boxes[:, 2], boxes[:, 1], frame.width_px - boxes[:, 0], boxes[:, 3]),
            axis=1,
        )
    visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[visible], np.clip(rows[visible], 0.0, 1.0).astype(np.float32)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` ``[n, 4]`` with every box of ``b`` ``[m, 4]`` (xyxy)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64)
    b = b.reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_pass(
    base_boxes: np.ndarray,
    base_classes: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    min_iou: float = MATCH_IOU,
) -> tuple[np.ndarray, np.ndarray]:
    """Per base box: the index of its match in ``boxes`` (-1: none) and the pair's IoU."""
    n = len(base_boxes)
    match, match_iou = np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.float64)
    if n == 0 or len(boxes) == 0:
        return match, match_iou
    from scipy.optimize import linear_sum_assignment

    iou = pairwise_iou(base_boxes, boxes)
    valid = iou >= min_iou
    gain = np.where(valid, iou + (base_classes[:, None] == classes[None, :]), 0.0)
    rows, cols = linear_sum_assignment(gain, maximize=True)
    keep = valid[rows, cols]
    match[rows[keep]] = cols[keep]
    match_iou[rows[keep]] = iou[rows[keep], cols[keep]]
    return match, match_iou


KEEP_ROWS_MIN = 0.05


def tta_signals(
    base_boxes: np.ndarray,
    base_rows: np.ndarray,
    passes: Sequence[tuple[np.ndarray, np.ndarray]],
) -> dict[str, npt.NDArray[np.float32]]:
    """The three signals (module doc) of base boxes ``[n, 4]`` / rows ``[n, c]`` and the
    augmented passes' ``(boxes [m, 4], rows [m, c])`` in original pixels."""
    n, n_classes = base_rows.shape
    probs = np.zeros((len(passes), n, n_classes), dtype=np.float32)
    agreeing = np.ones(n, dtype=np.float64)  # the base pass
    iou_sum = np.zeros(n, dtype=np.float64)
    base_classes = base_rows.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    for t, (boxes, rows) in enumerate(passes):
        classes = rows.argmax(axis=1) if len(rows) else np.zeros(0, dtype=np.int64)
        match, iou = match_pass(base_boxes, base_classes, boxes, classes)
        found = match >= 0
        probs[t, found] = rows[match[found]]
        agree = np.zeros(n, dtype=bool)
        agree[found] = classes[match[found]] == base_classes[found]
        agreeing += agree
        iou_sum += iou
    total = len(passes) + 1
    if n:
        probs[:, base_rows.max(axis=1) < KEEP_ROWS_MIN] = 0.0
    return {
        "tta_probs": probs,
        "tta_variation_ratio": (1.0 - agreeing / total).astype(np.float32),
        "tta_iou_spread": np.clip(1.0 - iou_sum / max(len(passes), 1), 0.0, 1.0).astype(np.float32),
    }


def with_tta(prediction: Prediction, passes: Sequence[tuple[np.ndarray, np.ndarray]]) -> Prediction:
    """``prediction`` plus the TTA signals and per-box attributes (nothing else changes)."""
    boxes = np.asarray(
        [
            s.region.box_xyxy if isinstance(s.region, Box) else (0, 0, 0, 0)
            for s in prediction.suggestions
        ],
        dtype=np.float64,
    ).reshape(-1, 4)
    signals = tta_signals(boxes, prediction.probs, passes)
    ratio, spread = signals["tta_variation_ratio"], signals["tta_iou_spread"]
    suggestions = tuple(
        dataclasses.replace(
            s,
            attributes={
                **s.attributes,
                "tta_variation_ratio": float(ratio[i]),
                "tta_iou_spread": float(spread[i]),
            },
        )
        for i, s in enumerate(prediction.suggestions)
    )
    return dataclasses.replace(
        prediction, suggestions=suggestions, signals={**prediction.signals, **signals}
    )


def tta_disagreement(prediction: Prediction, min_score: float = SHOWN_SCORE) -> float:
    """One number in [0, 1] for the item: the score-weighted mean, over the boxes shown
    (score >= ``min_score``; all boxes when none is), of the mean of each box's
    variation ratio and IoU spread. 0.0 without boxes or without TTA signals."""
    ratio = prediction.signals.get("tta_variation_ratio")
    spread = prediction.signals.get("tta_iou_spread")
    if ratio is None or spread is None or not len(ratio):
        return 0.0
    scores = np.asarray([s.score for s in prediction.suggestions[: len(ratio)]], dtype=np.float64)
    shown = scores >= min_score
    if not shown.any():
        shown = np.ones_like(shown)
    weights = scores[shown] + 1e-9
    per_box = (np.asarray(ratio, dtype=np.float64) + np.asarray(spread, dtype=np.float64)) / 2
    return float(np.sum(weights * per_box[shown]) / np.sum(weights))
