"""Real yolo11n embeddings and TTA signals on ultralytics' sample photos.

Needs the weights (`labelengine models pull`): a test fails when they are missing.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import image_items

from engine.imaging.decode import decode_image
from engine.models.yolo import YoloDetector
from engine.models.yolo_tta import tta_disagreement

TTA = ["hflip", "scale:0.83", "scale:1.2"]


def _weights() -> Path:
    models_dir = os.environ.get("LABELENGINE_MODELS_DIR", "~/.cache/labelengine/models")
    path = Path(models_dir).expanduser() / "yolo11n" / "yolo11n.pt"
    if not path.is_file():
        pytest.fail(f"real weights not found at {path} (labelengine models pull)")
    return path


def _photo(file: str) -> np.ndarray:
    spec = importlib.util.find_spec("ultralytics")  # locate without importing it
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "assets" / file
    return decode_image(path.read_bytes(), source=file)


def _striped(image: np.ndarray) -> np.ndarray:
    """Half the photo hidden: a grey 20 px bar every 40 px (people and bus cut in slices)."""
    out = image.copy()
    for x in range(0, image.shape[1], 40):
        out[:, x : x + 20] = 114
    return out


def _cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
    assert a is not None and b is not None
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def tta() -> YoloDetector:
    return YoloDetector(_weights(), device="cpu", tta=TTA)


@pytest.mark.slow
@pytest.mark.parametrize("photo", ["bus.jpg", "zidane.jpg"])
def test_tta_disagrees_more_on_an_ambiguous_photo(tta: YoloDetector, photo: str) -> None:
    clear = _photo(photo)
    plain, hidden = tta.predict(image_items(2), [clear, _striped(clear)])
    confident = [s for s in plain.suggestions if s.score >= 0.5]
    assert confident and all(s.attributes["tta_variation_ratio"] == 0.0 for s in confident)
    assert all(s.attributes["tta_iou_spread"] < 0.25 for s in confident)
    assert tta_disagreement(hidden) > max(
        2 * tta_disagreement(plain), tta_disagreement(plain) + 0.05
    )
    assert plain.signals["tta_probs"].shape == (len(TTA), len(plain.suggestions), 80)


@pytest.mark.slow
@pytest.mark.parametrize("letterbox_mode", ["rect", "square"])
def test_tta_signals_batched_equal_single(letterbox_mode: str) -> None:
    detector = YoloDetector(_weights(), device="cpu", letterbox_mode=letterbox_mode, tta=TTA)
    photos = [_photo("bus.jpg"), _photo("zidane.jpg")]
    batched = detector.predict(image_items(2), photos)
    for i, photo in enumerate(photos):
        alone = detector.predict(image_items(2)[i : i + 1], [photo])[0]
        shown = [k for k, s in enumerate(alone.suggestions) if s.score >= 0.25]
        for name in ("tta_variation_ratio", "tta_iou_spread"):
            np.testing.assert_allclose(
                alone.signals[name][shown], batched[i].signals[name][shown], atol=1e-3
            )
        assert _cosine(alone.embedding, batched[i].embedding) > 1 - 1e-6


@pytest.mark.slow
def test_near_duplicate_crops_are_closer_than_other_photos() -> None:
    detector = YoloDetector(_weights(), device="cpu")
    bus, zidane = _photo("bus.jpg"), _photo("zidane.jpg")
    crops = [bus[:1000, :780], bus[30:1060, 20:800], zidane[:, :1200], zidane[20:, 60:]]
    a, b, c, d = (p.embedding for p in detector.predict(image_items(4), crops))
    assert _cosine(a, b) > _cosine(a, c) + 0.1 and _cosine(a, b) > _cosine(a, d) + 0.1
    assert _cosine(c, d) > _cosine(b, c) + 0.1 and _cosine(c, d) > _cosine(b, d) + 0.1


@pytest.mark.slow
def test_the_embedding_is_ultralytics_pooled_sppf_output() -> None:
    """bus.jpg fills its rect canvas (640 x 480): no padding, the plain mean of layer 9."""
    from ultralytics import YOLO

    weights, bus = _weights(), _photo("bus.jpg")
    ours = YoloDetector(weights, device="cpu", letterbox_mode="rect").predict(image_items(1), [bus])
    bgr = np.ascontiguousarray(bus[:, :, ::-1])
    theirs: Any = YOLO(str(weights)).predict(bgr, embed=[9], rect=True, device="cpu", verbose=False)
    vector = np.asarray(theirs[0].cpu().numpy()).reshape(-1)
    assert _cosine(ours[0].embedding, vector) > 0.999
