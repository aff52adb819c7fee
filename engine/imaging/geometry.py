"""Masks <-> polygons, and boxes clipped to an image.

Polygon points are continuous pixel coordinates (pixel ``(i, j)`` spans
``[i, i + 1) x [j, j + 1)``); outlines from masks pass through the centres of
the boundary pixels (``index + 0.5``), and rasterising fills every pixel whose
centre lies inside or on the polygon, so mask -> polygon -> mask gives the mask
back (holes aside: a polygon has none).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.types import Box

BoolArray = npt.NDArray[np.bool_]
PointsArray = npt.NDArray[np.float64]
_SUBPIXEL_SHIFT = 8


def mask_polygons_xy(mask: BoolArray, *, simplify_px: float = 0.0) -> list[PointsArray]:
    """Outer outlines of a mask's parts, each a ``(K, 2)`` array of x, y points (K >= 3).

    ``simplify_px > 0`` drops vertices closer than that to the outline
    (Douglas-Peucker); parts thinner than a pixel (under 3 vertices) are left out.
    """
    import cv2

    array = np.asarray(mask)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"mask must be a non-empty 2-D HxW array, got shape {array.shape}")
    contours, _ = cv2.findContours(
        np.ascontiguousarray(array, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    polygons: list[PointsArray] = []
    for contour in contours:
        if simplify_px > 0:
            contour = cv2.approxPolyDP(contour, simplify_px, True)
        points = contour.reshape(-1, 2).astype(np.float64) + 0.5
        if len(points) >= 3:
            polygons.append(points)
    return polygons


def polygon_to_mask(points_xy: npt.ArrayLike, height_px: int, width_px: int) -> BoolArray:
    """Rasterise one polygon (``(K, 2)`` x, y points, K >= 3) into an ``HxW`` bool mask."""
    import cv2

    points = np.asarray(points_xy, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 (x, y) points, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("polygon points must be finite")
    if height_px <= 0 or width_px <= 0:
        raise ValueError(f"mask size must be positive, got {height_px}x{width_px}")
    out = np.zeros((height_px, width_px), dtype=np.uint8)
    fixed = np.round((points - 0.5) * (1 << _SUBPIXEL_SHIFT)).astype(np.int32)
    cv2.fillPoly(out, [fixed], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_SHIFT)
    return out.astype(bool)


def clipped_box(
    x1: float, y1: float, x2: float, y2: float, width_px: float, height_px: float
) -> Box:
    """A ``Box`` from corners in any order, clipped to ``[0, width] x [0, height]``."""
    xs = sorted((min(max(x1, 0.0), width_px), min(max(x2, 0.0), width_px)))
    ys = sorted((min(max(y1, 0.0), height_px), min(max(y2, 0.0), height_px)))
    return Box(xs[0], ys[0], xs[1], ys[1])


def rotated_box_bounds(
    x: float, y: float, width: float, height: float, rotation_deg: float
) -> tuple[float, float, float, float]:
    """Axis-aligned bounds of a rectangle rotated clockwise about its top-left corner.

    Label Studio rotates rectangles that way (screen coordinates, y down).
    """
    theta = np.deg2rad(rotation_deg)
    dx = np.array([0.0, width, width, 0.0])
    dy = np.array([0.0, 0.0, height, height])
    xs = x + dx * np.cos(theta) - dy * np.sin(theta)
    ys = y + dx * np.sin(theta) + dy * np.cos(theta)
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())
