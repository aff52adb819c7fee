"""Binary masks <-> COCO compressed RLE, plus the few mask statistics we need.

A mask is an ``HxW`` bool array in image pixels. Its RLE is pycocotools'
compressed ``counts`` decoded to ``str`` (what ``engine.types.Mask`` stores)
with ``size = [height_px, width_px]``. Boxes are ``xyxy`` in pixels with
exclusive right/bottom edges: a single pixel at (x, y) has box
``(x, y, x + 1, y + 1)``; an empty mask has box ``(0, 0, 0, 0)``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.types import Box, Mask

BoolArray = npt.NDArray[np.bool_]


def _check_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.shape[0] == 0 or mask.shape[1] == 0:
        raise ValueError(f"mask must be a non-empty 2-D HxW array, got shape {mask.shape}")
    if mask.dtype != np.bool_:
        raise ValueError(f"mask must be a bool array, got dtype {mask.dtype}")
    return mask


def encode_rle(mask: BoolArray) -> str:
    """COCO compressed RLE counts of an ``HxW`` bool mask, as a string."""
    from pycocotools import mask as mask_utils

    mask = _check_mask(mask)
    rle = mask_utils.encode(np.asfortranarray(mask[:, :, None].astype(np.uint8)))[0]
    counts = rle["counts"]
    return counts.decode("ascii") if isinstance(counts, bytes) else str(counts)


def decode_rle(mask_rle: str, height_px: int, width_px: int) -> BoolArray:
    """Inverse of ``encode_rle``."""
    from pycocotools import mask as mask_utils

    if height_px <= 0 or width_px <= 0:
        raise ValueError(f"mask size must be positive, got {height_px}x{width_px}")
    rle = {"counts": mask_rle.encode("ascii"), "size": [height_px, width_px]}
    return mask_utils.decode(rle).astype(bool)


def mask_box_xyxy(mask: BoolArray) -> tuple[float, float, float, float]:
    """Tight box of the true pixels (exclusive right/bottom); zeros for an empty mask."""
    mask = _check_mask(mask)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return (0.0, 0.0, 0.0, 0.0)
    cols = np.flatnonzero(mask.any(axis=0))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def mask_to_region(mask: BoolArray) -> Mask:
    """An ``engine.types.Mask`` (RLE + size + tight box) for an ``HxW`` bool mask."""
    mask = _check_mask(mask)
    height_px, width_px = mask.shape
    return Mask(
        mask_rle=encode_rle(mask),
        height_px=int(height_px),
        width_px=int(width_px),
        box=Box(*mask_box_xyxy(mask)),
    )


def mask_iou(a: BoolArray, b: BoolArray) -> float:
    """Intersection over union of two same-shape masks; 1.0 when both are empty."""
    a, b = _check_mask(a), _check_mask(b)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    union = int(np.logical_or(a, b).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(a, b).sum()) / union
