"""A previous binary mask (COCO RLE) as SAM's ``mask_input`` low-res logits.

SAM refines with the low-resolution logits ``[L, L]`` (L = 256 for the real
variants) of an earlier prediction. An editor may instead hold only a binary
mask at the image size, e.g. one it edited by hand. ``mask_to_low_res_logits``
inverts SAM's own mask postprocessing (``Sam.postprocess_masks``: upscale the
low-res grid to the encoder's ``img_size``, crop the bottom-right padding,
resize to the image) the way ``SamPredictor`` prepares an image:

1. resize the ``HxW`` mask (as 0/1 floats, bilinear, antialiased) to the
   encoder input size ``input_size_hw`` (longest side = ``img_size``);
2. pad bottom-right with 0 to ``img_size x img_size``;
3. area-average down to ``L x L`` (no-op when ``img_size == L``, as for LiteMedSAM);
4. map the covered fraction ``f`` in [0, 1] to a logit ``(2f - 1) * MASK_LOGIT``:
   inside +20, outside and padding -20 (the same value ``PAD_LOGIT`` the
   decoder leaves in the padding of its own logits), edges in between.

``parse_rle_counts`` checks a COCO compressed RLE string before anything
decodes it (pycocotools trusts the counts and reads past its buffer otherwise).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

MASK_LOGIT = 20.0


def parse_rle_counts(counts: str, size_hw: tuple[int, int]) -> list[int]:
    """Run lengths of a COCO compressed RLE string; they must cover ``H * W`` pixels.

    Same format as pycocotools' ``rleToString`` (6-bit chunks from ``'0'``,
    continuation bit 0x20, sign bit 0x10, counts after the second stored as
    differences to the count two before).
    """
    height, width = size_hw
    runs: list[int] = []
    value, shift = 0, 0
    for position, char in enumerate(counts):
        code = ord(char) - 48
        if not 0 <= code < 64:
            raise ValueError(f"mask RLE counts: invalid character {char!r} at {position}")
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:
            continue
        if code & 0x10:
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise ValueError(f"mask RLE counts: negative run length at {position}")
        runs.append(value)
        value, shift = 0, 0
    if shift:
        raise ValueError("mask RLE counts: the string ends inside a number")
    if sum(runs) != height * width:
        raise ValueError(
            f"mask RLE counts cover {sum(runs)} pixels, not {height}x{width} = {height * width}"
        )
    return runs


def decode_rle_mask(counts: str, size_hw: tuple[int, int]) -> npt.NDArray[np.bool_]:
    """The ``HxW`` bool mask of a checked COCO compressed RLE (column-major runs)."""
    runs = parse_rle_counts(counts, size_hw)
    values = np.arange(len(runs)) % 2 == 1  # runs alternate 0, 1, 0, ... starting with 0
    flat = np.repeat(values, runs)
    height, width = size_hw
    return flat.reshape(width, height).T


def mask_to_low_res_logits(
    mask: npt.NDArray[np.bool_],
    input_size_hw: tuple[int, int],
    img_size: int,
    low_res_size: int,
) -> npt.NDArray[np.float32]:
    """``[L, L]`` float32 logits for an ``HxW`` bool mask; see the module doc."""
    import torch
    import torch.nn.functional as F

    if mask.ndim != 2 or mask.dtype != np.bool_:
        raise ValueError(f"mask must be a 2-D bool array, got {mask.dtype} {mask.shape}")
    height, width = input_size_hw
    if not (0 < height <= img_size and 0 < width <= img_size):
        raise ValueError(f"input_size_hw {input_size_hw} must fit in img_size {img_size}")
    pixels = torch.from_numpy(mask.astype(np.float32))[None, None]
    resized = F.interpolate(
        pixels, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    padded = F.pad(resized, (0, img_size - width, 0, img_size - height))
    if img_size != low_res_size:
        padded = F.interpolate(padded, size=(low_res_size, low_res_size), mode="area")
    fraction = padded[0, 0].clamp(0.0, 1.0)
    return ((2.0 * fraction - 1.0) * MASK_LOGIT).numpy().astype(np.float32)
