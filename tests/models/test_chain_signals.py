"""What a detector -> segmenter chain adds beyond masks: the item embedding (the detector's,
else the segmenter's pooled image embedding) and the detector's TTA signals, mask rows
included. Tiny random YOLO11n and LiteMedSAM; the chain's masks are in
tests/prelabel/test_prelabel_chain.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from tiny_models import image_items, random_images, tiny_sam, tiny_yolo

from engine.models.chain import ChainedModel, chained_signals
from engine.models.sam.pooling import image_cells, pooled_embedding
from engine.types import EMBEDDING_WIDTH, Box, Item, Mask, Prediction

SIZES = ((60, 100), (90, 40))
TTA = ["hflip", "scale:0.75"]


class _NoEmbedding:
    """A detector wrapper that drops the embedding (as a detector without one)."""

    def __init__(self, detector: Any) -> None:
        self.detector, self.name, self.version = detector, detector.name, detector.version

    def predict(self, items: Sequence[Item], inputs: Sequence[Any] | None = None) -> list[Any]:
        return [
            dataclasses.replace(p, embedding=None) for p in self.detector.predict(items, inputs)
        ]


@pytest.fixture(scope="module")
def detector() -> Any:
    return tiny_yolo(num_classes=3, imgsz_px=64, max_det=4, conf_floor=0.0, tta=TTA)


def _chain(detector: Any) -> ChainedModel:
    return ChainedModel(detector, tiny_sam(iou_bias=3.0), version="chain-v", min_box_score=0.0)


def test_the_detectors_embedding_is_the_items(detector: Any) -> None:
    images = random_images(np.random.default_rng(0), SIZES)
    own = detector.predict(image_items(2), images)
    chained = _chain(detector).predict(image_items(2), images)
    for a, b in zip(own, chained, strict=True):
        np.testing.assert_array_equal(a.embedding, b.embedding)


def test_without_one_the_segmenters_embedding_is_pooled_over_the_image(detector: Any) -> None:
    images = random_images(np.random.default_rng(1), SIZES)
    chain = _chain(_NoEmbedding(detector))
    predictions = chain.predict(image_items(2), images)
    for prediction, image in zip(predictions, images, strict=True):
        vector = prediction.embedding
        embedding = chain.segmenter.embed(None, image)
        features = embedding.features
        assert vector is not None and vector.shape == (features.shape[1],)  # 256 in real SAMs
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        grid_hw = (int(features.shape[2]), int(features.shape[3]))
        rows, cols = image_cells(embedding.input_size_hw, chain.segmenter.img_size, grid_hw)
        assert rows < grid_hw[0] or cols < grid_hw[1]  # the padding is left out
        mean = features[0, :, :rows, :cols].float().mean(dim=(1, 2)).numpy()
        np.testing.assert_allclose(vector, mean / np.linalg.norm(mean), atol=1e-5)
        np.testing.assert_allclose(
            pooled_embedding(embedding, chain.segmenter.img_size), vector, atol=1e-6
        )
    wide = dataclasses.replace(embedding, features=features.repeat(1, 16, 1, 1))
    assert pooled_embedding(wide, chain.segmenter.img_size).shape == (EMBEDDING_WIDTH,)


def test_mask_rows_carry_their_boxes_tta_signals(detector: Any) -> None:
    images = random_images(np.random.default_rng(2), SIZES)
    own = detector.predict(image_items(2), images)
    chained = _chain(detector).predict(image_items(2), images)
    for det, out in zip(own, chained, strict=True):
        parents = [s.parent_index for s in out.suggestions if isinstance(s.region, Mask)]
        n, total = len(det.suggestions), len(out.suggestions)
        assert parents and total == n + len(parents)
        assert out.signals["tta_probs"].shape == (len(TTA), total, 3)
        for name in ("tta_variation_ratio", "tta_iou_spread"):
            values = out.signals[name]
            assert values.shape == (total,)
            np.testing.assert_array_equal(values[:n], det.signals[name])
            np.testing.assert_array_equal(values[n:], det.signals[name][parents])
            for suggestion in out.suggestions[n:]:
                assert suggestion.parent_index is not None
                box = out.suggestions[suggestion.parent_index]
                assert suggestion.attributes[name] == box.attributes[name]


def test_other_signals_pass_through_unchanged() -> None:
    probs = np.zeros((2, 0), dtype=np.float32)
    from engine.types import Suggestion

    suggestions = tuple(Suggestion("a", 0.5, Box(0, 0, 5, 5), "m", "v") for _ in range(2))
    det = Prediction(
        "i",
        "m",
        "v",
        suggestions,
        probs,
        signals={"other": np.arange(2), "tta_iou_spread": np.array([0.1, 0.2])},
    )
    out = chained_signals(det, [1])
    np.testing.assert_array_equal(out["other"], [0, 1])
    np.testing.assert_allclose(out["tta_iou_spread"], [0.1, 0.2, 0.2])
