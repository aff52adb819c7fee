"""The bundled LiteMedSAM weights through SamSegmenter (slow: real encoder on CPU)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from engine.imaging.masks import mask_iou
from engine.models.sam.embedding_cache import EmbeddingCache
from engine.models.sam.segmenter import SamSegmenter

pytestmark = pytest.mark.slow

CUP_BOX_XYXY = (165, 10, 420, 305)  # the espresso cup in skimage.data.coffee(), handle included
SPOON_BOX_XYXY = (320, 65, 425, 330)


def _weights_path(name: str, filename: str) -> Path:
    root = Path(os.environ.get("LABELENGINE_MODELS_DIR", "~/.cache/labelengine/models"))
    return root.expanduser() / name / filename


@pytest.fixture(scope="module")
def weights() -> Path:
    path = _weights_path("litemedsam", "lite_medsam.pth")
    if not path.is_file():
        pytest.fail(f"LiteMedSAM weights not found at {path} (labelengine models pull)")
    return path


@pytest.fixture(scope="module")
def seg(weights: Path) -> SamSegmenter:
    return SamSegmenter("litemedsam", weights, device="cpu")


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    from skimage import data

    return data.coffee()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _share_inside(mask: np.ndarray, box: tuple[int, int, int, int]) -> tuple[float, float]:
    x1, y1, x2, y2 = box
    inside = mask[y1:y2, x1:x2]
    return float(inside.sum() / max(mask.sum(), 1)), float(inside.mean())


def test_version_and_box_prompt_on_the_cup(seg: SamSegmenter, coffee: np.ndarray) -> None:
    assert seg.version == "79d8c9dca6db-litemedsam" and not seg.accepts_point_prompts
    emb = seg.embed(None, coffee)
    assert emb.features.shape == (1, 256, 64, 64) and emb.input_size_hw == (171, 256)
    (cup,) = seg.segment(emb, box_xyxy=CUP_BOX_XYXY)
    within, coverage = _share_inside(cup.mask, CUP_BOX_XYXY)
    assert within > 0.98 and 0.30 <= coverage <= 0.95
    assert cup.predicted_iou > 0.7 and cup.stability_score > 0.6
    (spoon,) = seg.segment(emb, box_xyxy=SPOON_BOX_XYXY)
    assert _share_inside(spoon.mask, SPOON_BOX_XYXY)[0] > 0.98
    assert mask_iou(cup.mask, spoon.mask) < 0.1


def test_matches_stock_predictor_and_second_click_skips_encoder(
    weights: Path, coffee: np.ndarray
) -> None:
    seg = SamSegmenter("litemedsam", weights, device="cpu")
    emb = seg.embed("coffee", coffee)
    predictor = SamPredictor(seg.sam)
    predictor.set_image(coffee)
    for box in (CUP_BOX_XYXY, SPOON_BOX_XYXY):
        masks, ious, _ = predictor.predict(box=np.array(box), multimask_output=False)
        (ours,) = seg.segment(seg.embed("coffee", coffee), box_xyxy=box)
        assert mask_iou(ours.mask, masks[0]) > 0.999
        assert ours.predicted_iou == pytest.approx(float(ious[0]), abs=1e-4)
    assert seg.encoder_calls == 1 and seg.cache.stats()["hits"] == 2
    assert seg.embed("coffee", coffee) is emb


def test_fp16_storage_keeps_the_masks(weights: Path, coffee: np.ndarray) -> None:
    seg = SamSegmenter(
        "litemedsam", weights, device="cpu", cache=EmbeddingCache(store_dtype="fp16")
    )
    half = seg.embed(None, coffee)
    assert half.features.dtype == torch.float16
    full = seg._encode([coffee], ["full"])[0]
    assert full.features.dtype == torch.float32
    for box in (CUP_BOX_XYXY, SPOON_BOX_XYXY, (75, 70, 480, 390)):
        a = seg.segment(half, box_xyxy=box)[0].mask
        b = seg.segment(full, box_xyxy=box)[0].mask
        assert mask_iou(a, b) > 0.99


def test_threads_eviction_and_disk_tier(
    weights: Path, coffee: np.ndarray, astronaut: np.ndarray, tmp_path: Path
) -> None:
    one_embedding = 256 * 64 * 64 * 4
    cache = EmbeddingCache(max_bytes=int(1.5 * one_embedding), disk_dir=tmp_path)
    seg = SamSegmenter("litemedsam", weights, device="cpu", cache=cache)
    box = (100, 20, 400, 300)
    reference = {}
    for name, image in (("coffee", coffee), ("astronaut", astronaut)):
        reference[name] = seg.segment(seg.embed(None, image), box_xyxy=box)[0].mask
    stats = cache.stats()
    assert stats["entries"] == 1 and stats["evictions"] == 1 and stats["bytes"] <= cache.max_bytes
    errors: list[str] = []

    def client(name: str, image: np.ndarray) -> None:
        for _ in range(3):
            mask = seg.segment(seg.embed(None, image), box_xyxy=box)[0].mask
            if not np.array_equal(mask, reference[name]):
                errors.append(name)

    threads = [
        threading.Thread(target=client, args=item)
        for item in (("coffee", coffee), ("astronaut", astronaut))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and seg.images_encoded == 2  # evicted ones came back from disk
    restarted = SamSegmenter(
        "litemedsam", weights, device="cpu", cache=EmbeddingCache(disk_dir=tmp_path)
    )
    emb = restarted.embed(None, coffee)
    assert restarted.encoder_calls == 0 and restarted.cache.stats()["disk_hits"] == 1
    assert np.array_equal(restarted.segment(emb, box_xyxy=box)[0].mask, reference["coffee"])
