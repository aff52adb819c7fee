"""A YOLO image embedding from the detection forward pass itself (no second model).

``FeatureTap`` keeps a forward hook on the backbone's last spatial-pyramid
layer (``SPPF``: layer 9 of YOLO11 / YOLOv8 / YOLO26, stride 32, 256 channels
for the ``n`` sizes), else on the last backbone layer. The hook only keeps a
reference to that layer's output; nothing runs twice.

``pooled_embeddings`` averages each image's map over the cells that hold the
image, not the letterbox's grey padding (cells a padded border only partly
covers count; in ``square`` mode the padding would otherwise pull every
landscape photo towards one grey vector), in float32, then
``engine.sampling.embeddings.project_embedding``: L2-normalised, and projected
down (seeded Gaussian projection) when wider than ``EMBEDDING_WIDTH``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.models.letterbox import LetterboxFrame
from engine.sampling.embeddings import project_embedding
from engine.types import EMBEDDING_WIDTH, FloatArray

if TYPE_CHECKING:
    import torch

_POOLED_LAYER_TYPES = ("SPPF", "SPPELAN", "SPP")


def feature_layer_index(net: Any) -> int:
    """The index in ``net.model`` whose output becomes the embedding (see the module doc)."""
    layers = list(net.model)
    for index in range(len(layers) - 1, -1, -1):
        if type(layers[index]).__name__ in _POOLED_LAYER_TYPES:
            return index
    backbone = getattr(net, "yaml", {}).get("backbone") or []
    if not backbone:
        raise ValueError("cannot find a YOLO backbone layer to pool an embedding from")
    return len(backbone) - 1


class FeatureTap:
    """A forward hook that keeps the last output of one layer (read under the caller's lock).

    The detector calls the network under its forward lock and reads ``take()``
    before releasing it, so concurrent calls never see each other's features.
    """

    def __init__(self, net: Any, index: int | None = None) -> None:
        self.index = feature_layer_index(net) if index is None else index
        self._last: torch.Tensor | None = None
        self._handle = net.model[self.index].register_forward_hook(self._keep)

    def _keep(self, module: Any, inputs: Any, output: Any) -> None:
        self._last = output

    def take(self) -> torch.Tensor:
        """The hooked layer's output of the last forward ``[b, C, h, w]``; cleared once read."""
        last, self._last = self._last, None
        if last is None:
            raise RuntimeError("the YOLO feature hook saw no forward pass")
        return last

    def remove(self) -> None:
        self._handle.remove()


def image_cells(frame: LetterboxFrame, grid_hw: tuple[int, int]) -> tuple[slice, slice]:
    """The feature-map rows and columns that cover the image (not only padding)."""
    grid_h, grid_w = grid_hw
    cell_h = frame.canvas_height_px / grid_h
    cell_w = frame.canvas_width_px / grid_w
    top = min(int(frame.pad_top_px // cell_h), grid_h - 1)
    left = min(int(frame.pad_left_px // cell_w), grid_w - 1)
    bottom = math.ceil((frame.pad_top_px + frame.resized_height_px) / cell_h)
    right = math.ceil((frame.pad_left_px + frame.resized_width_px) / cell_w)
    return slice(top, max(min(bottom, grid_h), top + 1)), slice(
        left, max(min(right, grid_w), left + 1)
    )


def pooled_embeddings(
    features: torch.Tensor, frames: Sequence[LetterboxFrame], *, width: int = EMBEDDING_WIDTH
) -> list[FloatArray]:
    """One float32 vector (at most ``width`` wide) per image of ``features`` ``[b, C, h, w]``."""
    if features.ndim != 4 or features.shape[0] != len(frames):
        raise ValueError(f"expected [{len(frames)}, C, h, w] features, got {tuple(features.shape)}")
    grid_hw = (int(features.shape[2]), int(features.shape[3]))
    if all(_covers_grid(frame, grid_hw) for frame in frames):
        pooled = features.float().mean(dim=(2, 3))
    else:  # one weighted sum: 1 / (cells of the image) on its cells, 0 on padding
        import torch

        weights = np.zeros((len(frames), *grid_hw), dtype=np.float32)
        for index, frame in enumerate(frames):
            rows, cols = image_cells(frame, grid_hw)
            weights[index, rows, cols] = 1.0 / ((rows.stop - rows.start) * (cols.stop - cols.start))
        on_device = torch.from_numpy(weights).to(features.device)[:, None]
        pooled = (features.float() * on_device).sum(dim=(2, 3))
    vectors = project_embedding(pooled.cpu().numpy(), width=width).reshape(len(frames), -1)
    return list(vectors.astype(np.float32))


def _covers_grid(frame: LetterboxFrame, grid_hw: tuple[int, int]) -> bool:
    rows, cols = image_cells(frame, grid_hw)
    return rows == slice(0, grid_hw[0]) and cols == slice(0, grid_hw[1])
