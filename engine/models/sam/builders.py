"""Builders for Segment Anything variants, keyed by variant name.

Like ``segment_anything/build_sam.py``: one builder per variant assembles a
``segment_anything.modeling.Sam`` (image encoder + prompt encoder + mask
decoder). A checkpoint, when given, must load with ``strict=True``; without
one the weights are randomly initialised from ``seed`` (a random model times
the same as a trained one). ``tiny=True`` builds a miniature of the same
architecture so tests run every code path in well under a second.

Variants:

- ``vit_h`` / ``vit_l`` / ``vit_b``: the official SAM ViT encoders at 1024 px.
- ``vit_t``: MobileSAM's TinyViT encoder at 1024 px.
- ``litemedsam`` (default): LiteMedSAM's TinyViT at 256 px, box-trained, with
  plain ``/255`` pixel scaling (no mean/std normalisation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segment_anything.modeling import Sam
    from torch import nn

DEFAULT_VARIANT = "litemedsam"
_SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
_SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamVariant:
    """What a variant is and how its inputs are prepared."""

    name: str
    build_encoder: Callable[[bool], nn.Module]
    accepts_point_prompts: bool
    pixel_mean: tuple[float, float, float] = _SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = _SAM_PIXEL_STD
    description: str = ""


def _vit_encoder(embed_dim: int, depth: int, heads: int, global_attn: tuple[int, ...]) -> Callable:
    def build(tiny: bool) -> nn.Module:
        from functools import partial

        import torch
        from segment_anything.modeling import ImageEncoderViT

        full = {
            "embed_dim": embed_dim,
            "depth": depth,
            "num_heads": heads,
            "global_attn_indexes": global_attn,
            "img_size": 1024,
            "patch_size": 16,
            "window_size": 14,
            "out_chans": 256,
        }
        small = {
            "embed_dim": 32,
            "depth": 2,
            "num_heads": 2,
            "global_attn_indexes": (1,),
            "img_size": 128,
            "patch_size": 8,
            "window_size": 4,
            "out_chans": 32,
        }
        return ImageEncoderViT(
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            qkv_bias=True,
            use_rel_pos=True,
            **(small if tiny else full),  # type: ignore[arg-type]
        )

    return build


def _tiny_vit_encoder(img_size: int, patch_stride: int) -> Callable:
    def build(tiny: bool) -> nn.Module:
        from engine.models.sam.tiny_vit import TinyViT

        if tiny:
            return TinyViT(
                img_size=img_size // 4,
                embed_dims=(16, 24, 32, 48),
                depths=(1, 1, 1, 1),
                num_heads=(1, 2, 2, 3),
                window_sizes=(4, 4, 8, 4),
                patch_stride=patch_stride,
                out_chans=32,
            )
        return TinyViT(
            img_size=img_size,
            embed_dims=(64, 128, 160, 320),
            depths=(2, 2, 6, 2),
            num_heads=(2, 4, 5, 10),
            window_sizes=(7, 7, 14, 7),
            patch_stride=patch_stride,
        )

    return build


SAM_VARIANTS: dict[str, SamVariant] = {
    "vit_h": SamVariant(
        "vit_h", _vit_encoder(1280, 32, 16, (7, 15, 23, 31)), True, description="SAM ViT-H, 1024 px"
    ),
    "vit_l": SamVariant(
        "vit_l", _vit_encoder(1024, 24, 16, (5, 11, 17, 23)), True, description="SAM ViT-L, 1024 px"
    ),
    "vit_b": SamVariant(
        "vit_b", _vit_encoder(768, 12, 12, (2, 5, 8, 11)), True, description="SAM ViT-B, 1024 px"
    ),
    "vit_t": SamVariant(
        "vit_t", _tiny_vit_encoder(1024, 4), True, description="MobileSAM TinyViT, 1024 px"
    ),
    "litemedsam": SamVariant(
        "litemedsam",
        _tiny_vit_encoder(256, 1),
        accepts_point_prompts=False,
        pixel_mean=(0.0, 0.0, 0.0),
        pixel_std=(255.0, 255.0, 255.0),
        description="LiteMedSAM TinyViT, 256 px, trained on box prompts",
    ),
}


def get_variant(variant: str) -> SamVariant:
    if variant not in SAM_VARIANTS:
        known = ", ".join(sorted(SAM_VARIANTS))
        raise ValueError(f"unknown SAM variant {variant!r}; known variants: {known}")
    return SAM_VARIANTS[variant]


def _assemble(encoder: nn.Module, info: SamVariant) -> Sam:
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    prompt_dim = int(encoder.neck[0].out_channels)  # type: ignore[index,union-attr]
    img_size = int(encoder.img_size)  # type: ignore[arg-type]
    grid = _embedding_grid(encoder, img_size)
    tiny = prompt_dim < 256
    return Sam(
        image_encoder=encoder,  # type: ignore[arg-type]
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=4 if tiny else 16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=prompt_dim,
                mlp_dim=2 * prompt_dim if tiny else 2048,
                num_heads=2 if tiny else 8,
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=prompt_dim,
        ),
        pixel_mean=list(info.pixel_mean),
        pixel_std=list(info.pixel_std),
    )


def _embedding_grid(encoder: nn.Module, img_size: int) -> int:
    grid = getattr(encoder, "grid", None)
    if grid is not None:
        return int(grid)
    patch = encoder.patch_embed.proj.kernel_size[0]  # type: ignore[union-attr,index]
    return img_size // int(patch)


def load_state_dict_strict(model: nn.Module, checkpoint: Path) -> None:
    """Load a state dict (bare, or under ``model`` / ``state_dict``) with ``strict=True``."""
    import torch

    if not checkpoint.is_file():
        raise ValueError(f"SAM checkpoint not found: {checkpoint}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {checkpoint} does not fit this SAM variant: {exc}") from exc


def build_sam(
    variant: str = DEFAULT_VARIANT,
    checkpoint: Path | str | None = None,
    *,
    tiny: bool = False,
    seed: int = 0,
) -> Sam:
    """Build a ``Sam`` of ``variant`` in eval mode on CPU (fp32).

    ``checkpoint`` loads strictly; ``None`` keeps the seeded random init.
    ``tiny`` builds a miniature (for tests) and cannot take a checkpoint.
    """
    import torch

    info = get_variant(variant)
    if tiny and checkpoint is not None:
        raise ValueError("a tiny SAM is randomly initialised; it takes no checkpoint")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _assemble(info.build_encoder(tiny), info)
    if checkpoint is not None:
        load_state_dict_strict(model, Path(checkpoint))
    return model.eval()


SAM_BUILDERS: dict[str, Callable[..., Sam]] = {
    name: (
        lambda checkpoint=None, *, tiny=False, seed=0, _name=name: build_sam(
            _name, checkpoint, tiny=tiny, seed=seed
        )
    )
    for name in SAM_VARIANTS
}
