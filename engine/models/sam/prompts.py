"""Prompt validation and the click -> box rule for box-trained segmenters.

Coordinates are absolute image pixels: ``points_xy`` ``[n, 2]`` as ``(x, y)``,
``box_xyxy`` ``[4]``; a point may lie anywhere in ``[0, W] x [0, H]``, a box
must satisfy ``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``.

Which prompt reaches the decoder (``ResolvedPrompt.source``):

- a model that takes points (real SAM checkpoints): ``points``, ``box`` or
  ``points+box`` -- exactly what was given.
- a box-trained model (LiteMedSAM, ``accepts_point_prompts=False``): a given box
  is used alone (``box``; points are ignored). Points without a box become a box
  (``derived_box:detector`` or ``derived_box:default``, see ``box_around_point``);
  negative points are then ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
DEFAULT_BOX_FRACTION = 0.25


@dataclass(frozen=True, eq=False)
class ResolvedPrompt:
    """What the decoder gets: points (maybe none), a box (maybe none), and why."""

    points_xy: FloatArray | None
    point_labels: IntArray | None
    box_xyxy: FloatArray | None
    source: str


def _size_text(image_hw: tuple[int, int]) -> str:
    return f"{image_hw[1]}x{image_hw[0]} (WxH)"


def check_points(
    points_xy: npt.ArrayLike | None, point_labels: npt.ArrayLike | None, image_hw: tuple[int, int]
) -> tuple[FloatArray, IntArray] | None:
    """Validated ``(points [n, 2] float32, labels [n] int64)``, or None when no points."""
    if points_xy is None and point_labels is None:
        return None
    if points_xy is None or point_labels is None:
        raise ValueError("points_xy and point_labels must be given together")
    points = np.asarray(points_xy, dtype=np.float64)
    labels = np.asarray(point_labels)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
        raise ValueError(f"points_xy must have shape [n, 2] with n >= 1, got {points.shape}")
    if labels.shape != (points.shape[0],):
        raise ValueError(
            f"point_labels must have shape [{points.shape[0]}] to match points_xy, "
            f"got {labels.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"point_labels must be 1 (positive) or 0 (negative), got {labels}")
    if not np.isfinite(points).all():
        raise ValueError("points_xy must be finite")
    height, width = image_hw
    outside = (
        (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)
    )
    if outside.any():
        raise ValueError(
            f"point(s) {points[outside].tolist()} lie outside the image {_size_text(image_hw)}"
        )
    return points.astype(np.float32), labels.astype(np.int64)


def check_boxes(boxes_xyxy: npt.ArrayLike, image_hw: tuple[int, int]) -> FloatArray:
    """Validated boxes ``[n, 4]`` float32 (n may be 0)."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    if boxes.ndim == 1 and boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes_xyxy must have shape [n, 4], got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes_xyxy must be finite")
    height, width = image_hw
    x1, y1, x2, y2 = boxes.T
    bad = (x1 < 0) | (y1 < 0) | (x2 > width) | (y2 > height) | (x2 <= x1) | (y2 <= y1)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"box {index} {boxes[index].tolist()} is not a valid xyxy box inside the image "
            f"{_size_text(image_hw)}: need 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H"
        )
    return boxes.astype(np.float32)


def check_box(box_xyxy: npt.ArrayLike, image_hw: tuple[int, int]) -> FloatArray:
    """One validated box ``[4]`` float32."""
    box = np.asarray(box_xyxy, dtype=np.float64)
    if box.shape != (4,):
        raise ValueError(f"box_xyxy must have 4 numbers (x1, y1, x2, y2), got shape {box.shape}")
    return check_boxes(box[None], image_hw)[0]


def box_around_point(
    point_xy: npt.ArrayLike,
    image_hw: tuple[int, int],
    candidate_boxes_xyxy: npt.ArrayLike | None = None,
) -> tuple[FloatArray, str]:
    """A box prompt for a click, and where it came from (``detector`` or ``default``).

    Rule: the smallest-area candidate box (e.g. detector suggestions) that
    contains the point (edges included; ties -> the first); else a square of
    side ``DEFAULT_BOX_FRACTION`` (1/4) of the shorter image side, centred on
    the click and clipped to the image. ``point_xy`` may also be ``[n, 2]``:
    then the candidate must contain all points, and the default box is the
    points' bounding box grown by half that side on every side.
    """
    points = np.asarray(point_xy, dtype=np.float64).reshape(-1, 2)
    checked = check_points(points, np.ones(len(points)), image_hw)
    assert checked is not None  # points were given
    points = checked[0].astype(np.float64)
    if candidate_boxes_xyxy is not None:
        boxes = check_boxes(candidate_boxes_xyxy, image_hw).astype(np.float64)
        lo, hi = points.min(axis=0), points.max(axis=0)
        inside = (
            (boxes[:, 0] <= lo[0])
            & (boxes[:, 1] <= lo[1])
            & (boxes[:, 2] >= hi[0])
            & (boxes[:, 3] >= hi[1])
        )
        if inside.any():
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            areas[~inside] = np.inf
            return boxes[int(np.argmin(areas))].astype(np.float32), "detector"
    height, width = image_hw
    half = max(1.0, DEFAULT_BOX_FRACTION * min(height, width)) / 2.0
    lo, hi = points.min(axis=0) - half, points.max(axis=0) + half
    box = np.array(
        [max(lo[0], 0.0), max(lo[1], 0.0), min(hi[0], width), min(hi[1], height)],
        dtype=np.float32,
    )
    return box, "default"


def resolve_prompt(
    points_xy: npt.ArrayLike | None,
    point_labels: npt.ArrayLike | None,
    box_xyxy: npt.ArrayLike | None,
    image_hw: tuple[int, int],
    *,
    accepts_point_prompts: bool,
    candidate_boxes_xyxy: npt.ArrayLike | None = None,
) -> ResolvedPrompt:
    """Validate the prompt and decide what the decoder sees (see the module doc)."""
    checked = check_points(points_xy, point_labels, image_hw)
    box = check_box(box_xyxy, image_hw) if box_xyxy is not None else None
    if checked is None and box is None:
        raise ValueError(
            "empty prompt: give at least one point (points_xy + point_labels) or a box"
        )
    if checked is None:
        return ResolvedPrompt(None, None, box, "box")
    points, labels = checked
    if accepts_point_prompts:
        return ResolvedPrompt(points, labels, box, "points+box" if box is not None else "points")
    if box is not None:
        return ResolvedPrompt(None, None, box, "box")
    positive = points[labels == 1]
    if len(positive) == 0:
        raise ValueError(
            "this segmenter is box-prompted: a click needs at least one positive point "
            "(label 1) to derive a box from, or pass box_xyxy"
        )
    derived, origin = box_around_point(positive, image_hw, candidate_boxes_xyxy)
    return ResolvedPrompt(None, None, derived, f"derived_box:{origin}")
