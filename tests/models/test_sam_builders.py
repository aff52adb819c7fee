"""SAM builders: every variant's architecture, strict checkpoint loading, seeding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from engine.models.sam.builders import (
    DEFAULT_VARIANT,
    SAM_BUILDERS,
    SAM_VARIANTS,
    build_sam,
    get_variant,
    load_state_dict_strict,
)


def _weights_path(name: str, filename: str) -> Path:
    root = Path(os.environ.get("LABELENGINE_MODELS_DIR", "~/.cache/labelengine/models"))
    return root.expanduser() / name / filename


@pytest.mark.parametrize("variant", sorted(SAM_VARIANTS))
def test_tiny_variant_encoder_grid_matches_prompt_encoder(variant: str) -> None:
    sam = SAM_BUILDERS[variant](tiny=True)
    size = sam.image_encoder.img_size
    with torch.inference_mode():
        features = sam.image_encoder(torch.zeros(2, 3, size, size))
    grid = sam.prompt_encoder.image_embedding_size
    assert features.shape == (2, sam.prompt_encoder.embed_dim, *grid)
    assert sam.prompt_encoder.input_image_size == (size, size)
    assert not sam.training


def test_variant_metadata() -> None:
    assert DEFAULT_VARIANT == "litemedsam"
    assert get_variant("litemedsam").accepts_point_prompts is False
    assert all(get_variant(v).accepts_point_prompts for v in ("vit_h", "vit_l", "vit_b", "vit_t"))
    assert get_variant("litemedsam").pixel_std == (255.0, 255.0, 255.0)
    with pytest.raises(ValueError, match="unknown SAM variant 'vit_x'"):
        get_variant("vit_x")


def test_seeded_random_init_is_reproducible_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_sam("vit_b", tiny=True, seed=0).state_dict()
    assert torch.equal(torch.rand(1), expected_next)
    b = build_sam("vit_b", tiny=True, seed=0).state_dict()
    c = build_sam("vit_b", tiny=True, seed=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_strict_loading_round_trip_and_mismatch(tmp_path: Path) -> None:
    source = build_sam("litemedsam", tiny=True, seed=3)
    path = tmp_path / "weights.pth"
    torch.save({"model": source.state_dict()}, path)
    target = build_sam("litemedsam", tiny=True, seed=4)
    load_state_dict_strict(target, path)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in source.state_dict().items())

    partial = dict(source.state_dict())
    partial.pop("mask_decoder.iou_token.weight")
    torch.save(partial, path)
    with pytest.raises(ValueError, match="does not fit this SAM variant"):
        load_state_dict_strict(target, path)
    with pytest.raises(ValueError, match="checkpoint not found"):
        load_state_dict_strict(target, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="takes no checkpoint"):
        build_sam("litemedsam", path, tiny=True)


@pytest.mark.slow
def test_full_size_mobilesam_tinyvit_gives_64x64_grid() -> None:
    sam = build_sam("vit_t")
    with torch.inference_mode():
        features = sam.image_encoder(torch.zeros(1, 3, 1024, 1024))
    assert features.shape == (1, 256, 64, 64)


@pytest.mark.slow
def test_litemedsam_checkpoint_loads_strictly() -> None:
    path = _weights_path("litemedsam", "lite_medsam.pth")
    if not path.is_file():
        pytest.fail(f"LiteMedSAM weights not found at {path} (labelengine models pull)")
    sam = build_sam("litemedsam", path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(sam.state_dict()) == set(state)
    assert torch.equal(
        sam.state_dict()["image_encoder.neck.0.weight"], state["image_encoder.neck.0.weight"]
    )
    with torch.inference_mode():
        features = sam.image_encoder(torch.zeros(1, 3, 256, 256))
    assert features.shape == (1, 256, 64, 64)
