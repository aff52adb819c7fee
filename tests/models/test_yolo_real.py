"""YoloDetector with the real yolo11n weights: accuracy on ultralytics' sample photos,
batch = single, parity with ``YOLO.predict``, and fp16 on CUDA (``gpu``).

Needs the weights (`labelengine models pull`): a test fails when they are missing.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import box_array, image_items

from engine.imaging.decode import decode_image
from engine.models.yolo import YoloDetector
from engine.types import Box


def _weights_path(name: str, file: str) -> Path:
    models_dir = os.environ.get("LABELENGINE_MODELS_DIR", "~/.cache/labelengine/models")
    path = Path(models_dir).expanduser() / name / file
    if not path.is_file():
        pytest.fail(f"real weights not found at {path} (labelengine models pull)")
    return path


def _ultralytics_asset(file: str) -> Path:
    spec = importlib.util.find_spec("ultralytics")  # locate without importing it
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "assets" / file


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area + areas - inter)


@pytest.fixture(scope="module")
def real() -> YoloDetector:
    return YoloDetector(_weights_path("yolo11n", "yolo11n.pt"), device="cpu")


@pytest.fixture(scope="module")
def bus() -> np.ndarray:
    return decode_image(_ultralytics_asset("bus.jpg").read_bytes(), source="bus.jpg")


@pytest.mark.slow
def test_real_weights_find_the_bus_and_the_people(real: YoloDetector, bus: np.ndarray) -> None:
    prediction = real.predict(image_items(1), [bus])[0]
    confident = [s for s in prediction.suggestions if s.score > 0.5]
    buses = [s for s in confident if s.label == "bus"]
    assert len(buses) == 1
    assert len([s for s in confident if s.label == "person"]) >= 3
    bus_box = buses[0].region
    assert isinstance(bus_box, Box)
    assert bus_box.x2 - bus_box.x1 > 0.8 * bus.shape[1]  # original pixels, not canvas
    assert prediction.probs.shape == (len(prediction.suggestions), 80)
    assert real.class_names[5] == "bus" and len(prediction.suggestions) > len(confident)


@pytest.mark.slow
@pytest.mark.parametrize("letterbox_mode", ["rect", "square"])
def test_real_batch_equals_single_images(bus: np.ndarray, letterbox_mode: str) -> None:
    detector = YoloDetector(
        _weights_path("yolo11n", "yolo11n.pt"), letterbox_mode=letterbox_mode, device="cpu"
    )
    zidane = decode_image(_ultralytics_asset("zidane.jpg").read_bytes())
    batched = detector.predict(image_items(2), [bus, zidane])
    for i, image in enumerate((bus, zidane)):
        alone = detector.predict(image_items(2)[i : i + 1], [image])[0]
        assert [s.label for s in alone.suggestions] == [s.label for s in batched[i].suggestions]
        np.testing.assert_allclose(box_array(alone), box_array(batched[i]), atol=0.05)
        np.testing.assert_allclose(alone.probs, batched[i].probs, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("asset", ["bus.jpg", "zidane.jpg"])
@pytest.mark.parametrize("letterbox_mode", ["rect", "square"])
def test_real_boxes_match_ultralytics_predict(asset: str, letterbox_mode: str) -> None:
    """Same boxes and scores as ``YOLO.predict`` with the same letterbox (rect=True/False)."""
    from ultralytics import YOLO

    weights = _weights_path("yolo11n", "yolo11n.pt")
    real = YoloDetector(weights, letterbox_mode=letterbox_mode, device="cpu")
    image = decode_image(_ultralytics_asset(asset).read_bytes())
    bgr = np.ascontiguousarray(image[:, :, ::-1])  # ultralytics takes OpenCV's BGR
    rect = letterbox_mode == "rect"
    results: Any = YOLO(str(weights)).predict(
        bgr, conf=0.25, rect=rect, device="cpu", verbose=False
    )
    found = results[0].boxes
    their_boxes = found.xyxy.cpu().numpy()
    their_classes = found.cls.cpu().numpy().astype(int)
    their_scores = found.conf.cpu().numpy()
    assert len(their_boxes) >= 2

    ours = real.predict(image_items(1), [image])[0]
    our_boxes = box_array(ours)
    our_classes = np.array([s.attributes["class_index"] for s in ours.suggestions])
    our_scores = np.array([s.score for s in ours.suggestions])
    for box, cls, score in zip(their_boxes, their_classes, their_scores, strict=True):
        match = (_iou(box, our_boxes) > 0.9) & (our_classes == cls)
        assert match.any(), f"ultralytics box {box} ({cls}, {score:.2f}) not found"
        assert np.abs(our_scores[match] - score).min() < 0.02
    for box, cls in zip(our_boxes[our_scores > 0.3], our_classes[our_scores > 0.3], strict=True):
        assert ((_iou(box, their_boxes) > 0.9) & (their_classes == cls)).any()


@pytest.mark.gpu
@pytest.mark.slow
def test_cuda_fp16_agrees_with_cpu_fp32(real: YoloDetector, bus: np.ndarray) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    gpu = YoloDetector(_weights_path("yolo11n", "yolo11n.pt"), device="auto")
    assert gpu.device == "cuda" and gpu.dtype == torch.float16
    on_gpu, on_cpu = gpu.predict(image_items(1), [bus])[0], real.predict(image_items(1), [bus])[0]
    cpu_boxes, gpu_boxes = box_array(on_cpu), box_array(on_gpu)
    gpu_scores = np.array([s.score for s in on_gpu.suggestions])
    for box, suggestion in zip(cpu_boxes, on_cpu.suggestions, strict=True):
        if suggestion.score > 0.3:
            match = _iou(box, gpu_boxes) > 0.95
            assert match.any() and np.abs(gpu_scores[match] - suggestion.score).min() < 0.02
