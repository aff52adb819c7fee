"""Decoder logits -> ``MaskResult``: upscaling, thresholds, quality scores.

Scores per mask:

- ``predicted_iou``: the decoder's own IoU estimate (can leave [0, 1] a little).
- ``stability_score``: IoU of the masks thresholded at ``threshold + 1`` and
  ``threshold - 1`` (``segment_anything.utils.amg.calculate_stability_score``
  with offset 1.0) on the full-resolution logits; 0.0 when both are empty.
- ``multimask_disagreement`` (multimask only, same value on each of the three):
  ``1 - mean pairwise IoU`` of the three masks; 0 = they agree, 1 = disjoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from engine.imaging.masks import mask_to_region

if TYPE_CHECKING:
    import torch

    from engine.types import Mask

STABILITY_OFFSET = 1.0
_MAX_UPSCALE_BYTES = 256 * 1024**2


@dataclass(frozen=True, eq=False)
class MaskResult:
    """One predicted mask.

    ``mask``: ``HxW`` bool in original image pixels. ``low_res_logits``:
    ``[1, L, L]`` float32 tensor on the model's device (L = 256 for the real
    variants); pass it back as ``mask_input`` to refine. ``prompt``: what the
    decoder saw (``points``, ``box``, ``points+box``, ``derived_box:detector``,
    ``derived_box:default``); ``prompt_box_xyxy``: the box it saw, if any.
    ``mask_index``: the decoder's output slot (0 single-mask, 1-3 multimask).
    """

    mask: npt.NDArray[np.bool_]
    predicted_iou: float
    stability_score: float
    low_res_logits: torch.Tensor
    prompt: str
    prompt_box_xyxy: tuple[float, float, float, float] | None
    mask_index: int
    multimask_disagreement: float | None = None

    @property
    def area_px(self) -> int:
        return int(self.mask.sum())

    def to_region(self) -> Mask:
        """The mask as ``engine.types.Mask`` (COCO RLE + size + tight box)."""
        return mask_to_region(self.mask)


def upscale_logits(
    low: torch.Tensor,
    img_size: int,
    low_size: int,
    input_size_hw: tuple[int, int],
    original_size_hw: tuple[int, int],
) -> torch.Tensor:
    """``[B, M, h, w]`` low-res logits (top-left valid part) -> ``[B, M, H, W]`` logits.

    Same maths as ``Sam.postprocess_masks`` (upscale to the encoder size, crop
    the padding, resize to the original size), on the valid part only.
    """
    import torch.nn.functional as F

    scale = img_size / low_size
    if scale != 1.0:
        low = F.interpolate(
            low,
            scale_factor=scale,
            mode="bilinear",
            align_corners=False,
            recompute_scale_factor=False,
        )
    low = low[..., : input_size_hw[0], : input_size_hw[1]]
    return F.interpolate(low, original_size_hw, mode="bilinear", align_corners=False)


def stability_scores(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """``[B, M]`` stability of ``[B, M, H, W]`` logits under a +-1 threshold shift."""
    inner = (logits > threshold + STABILITY_OFFSET).sum(dim=(-1, -2))  # int64 counts
    outer = (logits > threshold - STABILITY_OFFSET).sum(dim=(-1, -2))
    return inner.double() / outer.clamp(min=1).double()


def disagreement(masks: torch.Tensor) -> torch.Tensor:
    """``[B]``: 1 - mean pairwise IoU over the M masks of ``[B, M, H, W]`` bool masks."""
    import torch

    batch, count = masks.shape[:2]
    if count < 2:
        return torch.zeros(batch, dtype=torch.float64, device=masks.device)
    flat = masks.reshape(batch, count, -1).to(torch.float32)
    inter = (flat @ flat.transpose(1, 2)).double()  # exact below 2**24 pixels
    area = inter.diagonal(dim1=1, dim2=2)
    union = area[:, :, None] + area[:, None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    rows, cols = torch.triu_indices(count, count, offset=1)
    return 1.0 - iou[:, rows, cols].mean(dim=1)


def chunk_size(batch: int, masks: int, original_size_hw: tuple[int, int]) -> int:
    """How many prompts to upscale at once so float logits stay under ~256 MiB."""
    per_prompt = masks * original_size_hw[0] * original_size_hw[1] * 4
    return max(1, min(batch, _MAX_UPSCALE_BYTES // max(per_prompt, 1)))


@dataclass(frozen=True)
class PromptInfo:
    source: str
    box_xyxy: tuple[float, float, float, float] | None


def build_results(
    logits: torch.Tensor,
    low_full: torch.Tensor,
    iou: torch.Tensor,
    mask_indices: list[int],
    threshold: float,
    prompts: list[PromptInfo],
) -> list[list[MaskResult]]:
    """Per prompt, its masks best-first (by predicted IoU)."""
    masks = logits > threshold
    stability = stability_scores(logits, threshold).cpu().numpy()
    multi = len(mask_indices) > 1
    spread = disagreement(masks).cpu().numpy() if multi else None
    masks_np = masks.cpu().numpy()
    iou_np = iou.float().cpu().numpy()
    out: list[list[MaskResult]] = []
    for b, prompt in enumerate(prompts):
        results = [
            MaskResult(
                mask=masks_np[b, m],
                predicted_iou=float(iou_np[b, m]),
                stability_score=float(stability[b, m]),
                low_res_logits=low_full[b, m : m + 1],
                prompt=prompt.source,
                prompt_box_xyxy=prompt.box_xyxy,
                mask_index=mask_indices[m],
                multimask_disagreement=float(spread[b]) if spread is not None else None,
            )
            for m in range(len(mask_indices))
        ]
        results.sort(key=lambda r: -r.predicted_iou)
        out.append(results)
    return out
