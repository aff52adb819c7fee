"""One vector per image from a SAM image embedding (for diversity sampling).

The encoder's map (``[1, 256, 64, 64]`` for SAM and LiteMedSAM) covers the
resized image in its top-left corner and zero padding elsewhere (the input is
padded bottom-right to a square). ``pooled_embedding`` averages only the cells
the image covers (a cell the image only partly covers counts), in float32, and
passes the mean through ``engine.sampling.embeddings.project_embedding``
(L2-normalised, projected down when wider than ``EMBEDDING_WIDTH``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from engine.sampling.embeddings import project_embedding
from engine.types import EMBEDDING_WIDTH, FloatArray

if TYPE_CHECKING:
    from engine.models.sam.embedding_cache import Embedding


def image_cells(
    input_size_hw: tuple[int, int], img_size: int, grid_hw: tuple[int, int]
) -> tuple[int, int]:
    """Rows and columns of the embedding grid that the resized image covers."""
    rows = math.ceil(input_size_hw[0] * grid_hw[0] / img_size)
    cols = math.ceil(input_size_hw[1] * grid_hw[1] / img_size)
    return min(max(rows, 1), grid_hw[0]), min(max(cols, 1), grid_hw[1])


def pooled_embedding(
    embedding: Embedding, img_size: int, *, width: int = EMBEDDING_WIDTH
) -> FloatArray:
    """The mean of ``embedding.features`` over the image's cells, as a unit vector."""
    features = embedding.features
    if features.ndim != 4 or features.shape[0] != 1:
        raise ValueError(f"expected [1, C, h, w] features, got {tuple(features.shape)}")
    grid_hw = (int(features.shape[2]), int(features.shape[3]))
    rows, cols = image_cells(embedding.input_size_hw, img_size, grid_hw)
    mean = features[0, :, :rows, :cols].float().mean(dim=(1, 2)).cpu().numpy()
    return np.asarray(project_embedding(mean, width=width), dtype=np.float32)
