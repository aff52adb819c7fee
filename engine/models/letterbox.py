"""Letterboxing: scale an image into a stride-aligned canvas and map boxes back.

The geometry (scale, rounding, centring, grey 114 padding, bilinear resize)
is ultralytics' ``LetterBox``, so a model sees exactly the pixels it saw in
``YOLO.predict``; ``tests/models/test_letterbox.py`` checks this pixel for pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PAD_VALUE = 114  # ultralytics' letterbox grey


@dataclass(frozen=True)
class LetterboxFrame:
    """Where one original image sits in its letterboxed canvas."""

    scale: float  # canvas px per original px
    pad_left_px: int
    pad_top_px: int
    width_px: int  # original size
    height_px: int
    resized_width_px: int
    resized_height_px: int
    canvas_height_px: int
    canvas_width_px: int

    @property
    def canvas_shape(self) -> tuple[int, int]:
        return self.canvas_height_px, self.canvas_width_px


def plan_letterbox(
    height_px: int, width_px: int, imgsz_px: int, stride_px: int, *, square: bool = False
) -> LetterboxFrame:
    """Scale so the longest side is ``imgsz_px``; centre in a stride-aligned canvas.

    The canvas is ``imgsz_px`` square when ``square``, else the resized size
    rounded up to ``stride_px`` (ultralytics' ``LetterBox(auto=True)``, with
    its rounding, so single-image results match ``YOLO.predict``).
    """
    scale = min(imgsz_px / height_px, imgsz_px / width_px)
    resized_w, resized_h = max(round(width_px * scale), 1), max(round(height_px * scale), 1)
    canvas_h = imgsz_px if square else _round_up(resized_h, stride_px)
    canvas_w = imgsz_px if square else _round_up(resized_w, stride_px)
    return LetterboxFrame(
        scale=scale,
        pad_left_px=round((canvas_w - resized_w) / 2 - 0.1),
        pad_top_px=round((canvas_h - resized_h) / 2 - 0.1),
        width_px=width_px,
        height_px=height_px,
        resized_width_px=resized_w,
        resized_height_px=resized_h,
        canvas_height_px=canvas_h,
        canvas_width_px=canvas_w,
    )


def letterbox_images(images: Sequence[np.ndarray], frames: Sequence[LetterboxFrame]) -> np.ndarray:
    """Resize and paste images into one ``[b, H, W, 3]`` uint8 canvas (frames share a shape)."""
    import cv2

    canvas_h, canvas_w = frames[0].canvas_shape
    canvas = np.full((len(images), canvas_h, canvas_w, 3), PAD_VALUE, dtype=np.uint8)
    for index, (image, frame) in enumerate(zip(images, frames, strict=True)):
        if frame.canvas_shape != (canvas_h, canvas_w):
            raise ValueError("letterbox_images needs frames with one canvas shape")
        size = (frame.resized_width_px, frame.resized_height_px)
        resized = image
        if image.shape[1::-1] != size:
            resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        top, left = frame.pad_top_px, frame.pad_left_px
        canvas[index, top : top + size[1], left : left + size[0]] = resized
    return canvas


def to_original_pixels(boxes_xyxy: np.ndarray, frame: LetterboxFrame) -> np.ndarray:
    """Canvas-pixel ``[n, 4]`` xyxy boxes -> original-image pixels, clipped to the image."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    x = (boxes[:, 0::2] - frame.pad_left_px) / frame.scale
    y = (boxes[:, 1::2] - frame.pad_top_px) / frame.scale
    x = np.clip(x, 0.0, float(frame.width_px))
    y = np.clip(y, 0.0, float(frame.height_px))
    return np.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), axis=1)


def _round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple
