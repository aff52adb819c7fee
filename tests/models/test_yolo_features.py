"""The YOLO embedding from the detection forward: the hooked layer, padding-aware pooling,
batches and both letterbox modes, on a tiny random YOLO11n.

Real yolo11n embeddings (near-duplicates closer than other photos) are in
test_yolo_signals_real.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from tiny_models import image_items, random_images, tiny_yolo

from engine.models.letterbox import plan_letterbox
from engine.models.yolo import YoloDetector
from engine.models.yolo_features import feature_layer_index, image_cells, pooled_embeddings
from engine.types import EMBEDDING_WIDTH

SIZES = ((50, 80), (120, 60), (97, 97), (33, 200))


@pytest.fixture(scope="module")
def tiny() -> YoloDetector:
    return tiny_yolo(num_classes=3, imgsz_px=128, max_det=10, channels_last=False)


def test_the_hook_sits_on_the_sppf_layer(tiny: YoloDetector) -> None:
    net: Any = tiny._net
    assert feature_layer_index(net) == 9 == tiny._tap.index
    assert type(net.model[9]).__name__ == "SPPF"


@pytest.mark.parametrize("letterbox_mode", ["rect", "square"])
def test_every_image_gets_a_unit_embedding_batched_or_alone(letterbox_mode: str) -> None:
    detector = tiny_yolo(
        num_classes=3, imgsz_px=128, max_det=10, channels_last=False, letterbox_mode=letterbox_mode
    )
    images = random_images(np.random.default_rng(0), SIZES)
    batched = detector.predict(image_items(len(images)), images)
    for i, prediction in enumerate(batched):
        vector = prediction.embedding
        assert vector is not None and vector.dtype == np.float32
        assert vector.shape == (EMBEDDING_WIDTH,)  # yolo11n's SPPF: 256 channels
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        alone = detector.predict(image_items(len(images))[i : i + 1], images[i : i + 1])[0]
        assert alone.embedding is not None
        np.testing.assert_allclose(alone.embedding, vector, atol=1e-5)
    vectors = np.stack([p.embedding for p in batched if p.embedding is not None])
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-4  # not one vector for all


def test_padding_cells_do_not_enter_the_mean() -> None:
    import torch

    frame = plan_letterbox(100, 200, 128, 32, square=True)  # 64 px tall image, 32 px pads
    rows, cols = image_cells(frame, (4, 4))
    assert (rows, cols) == (slice(1, 3), slice(0, 4))
    features = torch.full((1, 2, 4, 4), 1000.0)
    features[0, 0, 1:3] = 3.0
    features[0, 1, 1:3] = 4.0
    vector = pooled_embeddings(features, [frame])[0]
    np.testing.assert_allclose(vector, [0.6, 0.8], rtol=1e-6)  # mean (3, 4), normalised
    exact = plan_letterbox(128, 128, 128, 32, square=True)
    assert image_cells(exact, (4, 4)) == (slice(0, 4), slice(0, 4))
    odd = plan_letterbox(100, 90, 128, 32)  # rect: 128 x 128 canvas, 6 px pads left and right
    assert image_cells(odd, (4, 4)) == (slice(0, 4), slice(0, 4))


def test_wide_maps_are_projected_to_the_embedding_width() -> None:
    import torch

    frames = [plan_letterbox(64, 64, 64, 32)] * 2
    vectors = pooled_embeddings(torch.randn(2, 512, 2, 2), frames)
    assert [v.shape for v in vectors] == [(EMBEDDING_WIDTH,)] * 2
    with pytest.raises(ValueError, match=r"\[2, C, h, w\]"):
        pooled_embeddings(torch.randn(3, 8, 2, 2), frames)


def test_concurrent_calls_keep_their_own_features(tiny: YoloDetector) -> None:
    images = random_images(np.random.default_rng(5), SIZES)
    items = image_items(len(images))
    sequential = [tiny.predict(items[i : i + 1], images[i : i + 1])[0] for i in range(len(images))]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(
            pool.map(
                lambda i: tiny.predict(items[i : i + 1], images[i : i + 1])[0], range(len(images))
            )
        )
    for a, b in zip(sequential, threaded, strict=True):
        assert a.embedding is not None and b.embedding is not None
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-6)
