"""YoloDetector: a tiny random YOLO11 for the contract, real yolo11n weights for accuracy."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.imaging.decode import decode_image
from engine.models.letterbox import letterbox_images, plan_letterbox, to_original_pixels
from engine.models.yolo import YoloDetector, yolo_model_version
from engine.types import Box, Item, Prediction

NUM_CLASSES = 5
IMGSZ_PX = 128
MIXED_SIZES = ((50, 80), (120, 60), (97, 97), (33, 200))  # (height, width)


def _weights_path(name: str, file: str) -> Path:
    models_dir = os.environ.get("LABELENGINE_MODELS_DIR", "~/.cache/labelengine/models")
    path = Path(models_dir).expanduser() / name / file
    if not path.is_file():
        pytest.skip(f"real weights not found at {path} (set LABELENGINE_MODELS_DIR)")
    return path


def _ultralytics_asset(file: str) -> Path:
    spec = importlib.util.find_spec("ultralytics")  # locate without importing it
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "assets" / file


def _images(rng: np.random.Generator, sizes: tuple[tuple[int, int], ...]) -> list[np.ndarray]:
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in sizes]


def _items(count: int) -> list[Item]:
    return [Item(item_id=f"img-{i}", kind="image", uri=f"/unused/{i}.png") for i in range(count)]


def _boxes(prediction: Prediction) -> np.ndarray:
    regions = [s.region for s in prediction.suggestions]
    assert all(isinstance(r, Box) for r in regions)
    return np.array([r.box_xyxy for r in regions if isinstance(r, Box)]).reshape(-1, 4)


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
def tiny() -> YoloDetector:
    """Real YOLO11n architecture, random weights; conf_floor 0 so every image has boxes.

    NCHW: oneDNN's NHWC kernels pay a set-up cost per new input shape, which
    dominates at these tiny sizes; the NHWC default is covered separately.
    """
    return YoloDetector(
        arch_yaml="yolo11n.yaml",
        num_classes=NUM_CLASSES,
        conf_floor=0.0,
        imgsz_px=IMGSZ_PX,
        max_det=40,
        channels_last=False,
        device="cpu",
    )


def test_mixed_size_batch_honours_the_prediction_contract(tiny: YoloDetector) -> None:
    images = _images(np.random.default_rng(0), MIXED_SIZES)
    predictions = tiny.predict(_items(len(images)), images)

    assert [p.item_id for p in predictions] == [f"img-{i}" for i in range(len(images))]
    for prediction, image in zip(predictions, images, strict=True):
        height_px, width_px = image.shape[:2]
        n_boxes = len(prediction.suggestions)
        assert 0 < n_boxes <= 40
        assert prediction.probs.shape == (n_boxes, NUM_CLASSES)
        assert prediction.probs.dtype == np.float32
        assert prediction.class_names == tiny.class_names
        assert len(tiny.class_names) == NUM_CLASSES
        boxes = _boxes(prediction)
        assert (boxes[:, [0, 2]] <= width_px).all() and (boxes[:, [1, 3]] <= height_px).all()
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
        scores = np.array([s.score for s in prediction.suggestions])
        assert ((scores >= 0) & (scores <= 1)).all()
        assert (np.diff(scores) <= 0).all()
        np.testing.assert_allclose(scores, prediction.probs.max(axis=1), rtol=1e-6)
        for suggestion, row in zip(prediction.suggestions, prediction.probs, strict=True):
            assert suggestion.attributes["class_index"] == int(row.argmax())
            assert suggestion.label == tiny.class_names[int(row.argmax())]
            assert (suggestion.model_name, suggestion.model_version) == (tiny.name, tiny.version)
        assert set(prediction.timings_ms) >= {"preprocess_ms", "forward_ms", "postprocess_ms"}


@pytest.mark.parametrize("letterbox_mode", ["rect", "square"])
def test_an_image_gets_the_same_result_alone_or_in_a_batch(
    tiny: YoloDetector, letterbox_mode: str
) -> None:
    detector = tiny
    if letterbox_mode != tiny.letterbox_mode:
        detector = YoloDetector(
            arch_yaml="yolo11n.yaml",
            num_classes=NUM_CLASSES,
            conf_floor=0.0,
            imgsz_px=IMGSZ_PX,
            max_det=30,
            letterbox_mode=letterbox_mode,
            channels_last=False,
            device="cpu",
        )
    images = _images(np.random.default_rng(1), MIXED_SIZES)
    batched = detector.predict(_items(len(images)), images)
    for i, image in enumerate(images):
        alone = detector.predict(_items(len(images))[i : i + 1], [image])[0]
        np.testing.assert_allclose(_boxes(alone), _boxes(batched[i]), atol=1e-2)
        np.testing.assert_allclose(alone.probs, batched[i].probs, atol=1e-4)


def test_channels_last_and_contiguous_layouts_agree() -> None:
    import torch

    detectors = []
    for channels_last in (True, False):
        torch.manual_seed(0)  # the same random weights for both
        detectors.append(
            YoloDetector(
                arch_yaml="yolo11n.yaml",
                num_classes=NUM_CLASSES,
                conf_floor=0.0,
                imgsz_px=64,
                max_det=20,
                channels_last=channels_last,
                device="cpu",
            )
        )
    nhwc, nchw = detectors
    assert nhwc.version == nchw.version  # same weights and config: same version
    images = _images(np.random.default_rng(9), ((64, 48), (30, 64)))
    for a, b in zip(nhwc.predict(_items(2), images), nchw.predict(_items(2), images), strict=True):
        np.testing.assert_allclose(_boxes(a), _boxes(b), atol=1e-2)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)


def test_concurrent_calls_with_different_shapes_match_sequential_ones(tiny: YoloDetector) -> None:
    from concurrent.futures import ThreadPoolExecutor

    images = _images(np.random.default_rng(8), MIXED_SIZES)
    sequential = [tiny.predict(_items(1), [image])[0] for image in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda image: tiny.predict(_items(1), [image])[0], images))
    for alone, threaded in zip(sequential, concurrent, strict=True):
        np.testing.assert_allclose(_boxes(alone), _boxes(threaded), atol=1e-3)


def test_empty_and_mismatched_inputs(tiny: YoloDetector) -> None:
    assert tiny.predict([], []) == []
    assert tiny.predict([]) == []
    images = _images(np.random.default_rng(2), ((40, 40),))
    with pytest.raises(ValueError, match="got 1 inputs for 2 items"):
        tiny.predict(_items(2), images)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((32, 32, 3), dtype=np.float32), "expected a uint8 numpy image"),
        (np.zeros((32, 32), dtype=np.uint8), "expected an HxWx3 RGB image"),
        (np.zeros((0, 32, 3), dtype=np.uint8), "expected an HxWx3 RGB image"),
        ([[1, 2, 3]], "expected a uint8 numpy image"),
    ],
)
def test_bad_input_images_name_the_item(tiny: YoloDetector, image: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        tiny.predict(_items(1), [image])
    assert "img-0" in str(info.value)


def test_reads_local_files_when_no_inputs_are_given(tiny: YoloDetector, tmp_path: Path) -> None:
    image = _images(np.random.default_rng(3), ((70, 110),))[0]
    path = tmp_path / "a b.png"
    Image.fromarray(image).save(path)
    items = [
        Item(item_id="plain", kind="image", uri=str(path)),
        Item(item_id="uri", kind="image", uri=path.as_uri()),
    ]
    from_files = tiny.predict(items)
    from_array = tiny.predict(items[:1], [image])[0]
    for prediction in from_files:
        np.testing.assert_allclose(prediction.probs, from_array.probs, atol=1e-5)
    with pytest.raises(ValueError, match="only local paths"):
        tiny.predict([Item(item_id="remote", kind="image", uri="s3://bucket/a.png")])
    with pytest.raises(ValueError, match="cannot read file"):
        tiny.predict([Item(item_id="gone", kind="image", uri=str(tmp_path / "gone.png"))])


def test_a_high_floor_gives_empty_predictions_with_shaped_probs() -> None:
    detector = YoloDetector(
        arch_yaml="yolo11n.yaml",
        num_classes=3,
        conf_floor=0.99,
        imgsz_px=64,
        version="v7",
        channels_last=False,
        device="cpu",
    )
    prediction = detector.predict(_items(1), _images(np.random.default_rng(4), ((64, 64),)))[0]
    assert prediction.model_version == "v7"
    assert prediction.suggestions == ()
    assert prediction.probs.shape == (0, 3)


def test_nms_free_yolo26_head_still_returns_every_class_score() -> None:
    detector = YoloDetector(
        arch_yaml="yolo26n.yaml",
        num_classes=4,
        conf_floor=0.0,
        imgsz_px=64,
        channels_last=False,
        device="cpu",
    )
    prediction = detector.predict(_items(1), _images(np.random.default_rng(5), ((64, 96),)))[0]
    assert prediction.suggestions
    assert prediction.probs.shape == (len(prediction.suggestions), 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of weights_path"),
        ({"arch_yaml": "yolo11n.yaml", "weights_path": "x.pt"}, "exactly one of weights_path"),
        ({"weights_path": "/nonexistent/yolo11n.pt"}, "existing local .pt file"),
        ({"weights_path": "yolo11n.pt"}, "existing local .pt file"),  # never downloaded
        ({"arch_yaml": "yolo11n.yaml", "conf_floor": 1.0}, "conf_floor"),
        ({"arch_yaml": "yolo11n.yaml", "iou_threshold": 0.0}, "iou_threshold"),
        ({"arch_yaml": "yolo11n.yaml", "imgsz_px": 100}, "multiple of the model stride 32"),
        ({"arch_yaml": "yolo11n.yaml", "max_det": 0}, "max_det"),
        ({"arch_yaml": "yolo11n.yaml", "letterbox_mode": "fit"}, "letterbox_mode"),
        ({"arch_yaml": "yolo11n.yaml", "num_classes": 2, "class_names": ["a"]}, "2 non-empty"),
        ({"weights_path": "/x/yolo11n.pt", "num_classes": 3}, "num_classes only applies"),
        ({"arch_yaml": "yolo11n-seg.yaml"}, "Segment head"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        YoloDetector(device="cpu", **kwargs)  # type: ignore[arg-type]


def test_version_follows_weights_and_output_parameters() -> None:
    first = YoloDetector(arch_yaml="yolo11n.yaml", num_classes=2, imgsz_px=64, device="cpu")
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]{8}", first.version)
    assert first.version == yolo_model_version(first.version[:12] + "0" * 52, first.config())
    renamed = YoloDetector(
        arch_yaml="yolo11n.yaml", num_classes=2, imgsz_px=64, class_names=("a", "b"), device="cpu"
    )
    assert renamed.class_names == ("a", "b")
    assert renamed.version.split("-")[1] != first.version.split("-")[1]  # config part
    assert renamed.version.split("-")[0] != first.version.split("-")[0]  # fresh random weights
    renamed.conf_floor = 0.2
    assert renamed.config()["conf_floor"] == 0.2
    assert yolo_model_version("0" * 64, renamed.config()) != yolo_model_version(
        "0" * 64, first.config()
    )


def test_yolo_model_version_hashes_sorted_config() -> None:
    digest = "ab" * 32
    version = yolo_model_version(digest, {"b": 1, "a": [1, 2]})
    assert version == yolo_model_version(digest.upper(), {"a": [1, 2], "b": 1})
    assert version.startswith("abababababab-")
    assert version != yolo_model_version(digest, {"a": [1, 2], "b": 2})
    canonical = json.dumps({"a": [1, 2], "b": 1}, sort_keys=True, separators=(",", ":"))
    import hashlib

    assert version.endswith(hashlib.sha256(canonical.encode()).hexdigest()[:8])
    with pytest.raises(ValueError, match="hex digest"):
        yolo_model_version("not-a-digest", {})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        yolo_model_version(digest, {"x": float("nan")})


@pytest.mark.parametrize(("square", "auto"), [(False, True), (True, False)])
@pytest.mark.parametrize("size", [(1080, 810), (720, 1280), (33, 200), (640, 640)])
def test_letterbox_matches_ultralytics_pixel_for_pixel(
    size: tuple[int, int], square: bool, auto: bool
) -> None:
    from ultralytics.data.augment import LetterBox

    image = _images(np.random.default_rng(6), (size,))[0]
    frame = plan_letterbox(size[0], size[1], 640, 32, square=square)
    ours = letterbox_images([image], [frame])[0]
    theirs = LetterBox(new_shape=(640, 640), auto=auto, stride=32)(image=image)
    np.testing.assert_array_equal(ours, theirs)


def test_to_original_pixels_inverts_the_letterbox_and_clips() -> None:
    frame = plan_letterbox(1080, 810, 640, 32)
    original = np.array([[10.0, 20.0, 400.0, 1000.0], [-50.0, 5.0, 900.0, 2000.0]])
    canvas = np.empty_like(original)
    canvas[:, 0::2] = original[:, 0::2] * frame.scale + frame.pad_left_px
    canvas[:, 1::2] = original[:, 1::2] * frame.scale + frame.pad_top_px
    back = to_original_pixels(canvas, frame)
    np.testing.assert_allclose(back[0], original[0], atol=1e-9)
    np.testing.assert_allclose(back[1], [0.0, 5.0, 810.0, 1080.0], atol=1e-9)


@pytest.mark.slow  # a fresh interpreter importing torch and ultralytics: seconds
def test_building_and_predicting_makes_no_network_calls() -> None:
    script = textwrap.dedent(
        """
        import sys
        calls = []
        sys.addaudithook(
            lambda event, args: calls.append(event)
            if event.startswith(("socket.", "urllib.")) else None
        )
        import numpy as np
        from engine.models.yolo import YoloDetector
        from engine.types import Item
        detector = YoloDetector(arch_yaml="yolo11n.yaml", imgsz_px=64, device="cpu")
        detector.predict([Item("a", "image", uri="x")], [np.zeros((64, 64, 3), np.uint8)])
        print("NETWORK", sorted(set(calls)))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert "NETWORK []" in result.stdout, result.stdout + result.stderr


# -- real weights -------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> YoloDetector:
    return YoloDetector(_weights_path("yolo11n", "yolo11n.pt"), device="cpu")


@pytest.fixture(scope="module")
def bus() -> np.ndarray:
    return decode_image(_ultralytics_asset("bus.jpg").read_bytes(), source="bus.jpg")


@pytest.mark.slow
def test_real_weights_find_the_bus_and_the_people(real: YoloDetector, bus: np.ndarray) -> None:
    prediction = real.predict(_items(1), [bus])[0]
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
    batched = detector.predict(_items(2), [bus, zidane])
    for i, image in enumerate((bus, zidane)):
        alone = detector.predict(_items(2)[i : i + 1], [image])[0]
        assert [s.label for s in alone.suggestions] == [s.label for s in batched[i].suggestions]
        np.testing.assert_allclose(_boxes(alone), _boxes(batched[i]), atol=0.05)
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

    ours = real.predict(_items(1), [image])[0]
    our_boxes = _boxes(ours)
    our_classes = np.array([s.attributes["class_index"] for s in ours.suggestions])
    our_scores = np.array([s.score for s in ours.suggestions])
    for box, cls, score in zip(their_boxes, their_classes, their_scores, strict=True):
        match = (_iou(box, our_boxes) > 0.9) & (our_classes == cls)
        assert match.any(), f"ultralytics box {box} ({cls}, {score:.2f}) not found"
        assert np.abs(our_scores[match] - score).min() < 0.02
    for box, cls in zip(our_boxes[our_scores > 0.3], our_classes[our_scores > 0.3], strict=True):
        assert ((_iou(box, their_boxes) > 0.9) & (their_classes == cls)).any()


def test_png_and_jpeg_bytes_decode_for_the_detector(tiny: YoloDetector) -> None:
    image = _images(np.random.default_rng(7), ((40, 60),))[0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    decoded = decode_image(buffer.getvalue())
    assert not decoded.flags.writeable  # read-only arrays from the decoder are fine
    prediction = tiny.predict(_items(1), [decoded])[0]
    assert prediction.suggestions


@pytest.mark.gpu
@pytest.mark.slow
def test_cuda_fp16_agrees_with_cpu_fp32(real: YoloDetector, bus: np.ndarray) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    gpu = YoloDetector(_weights_path("yolo11n", "yolo11n.pt"), device="auto")
    assert gpu.device == "cuda" and gpu.dtype == torch.float16
    on_gpu, on_cpu = gpu.predict(_items(1), [bus])[0], real.predict(_items(1), [bus])[0]
    cpu_boxes, gpu_boxes = _boxes(on_cpu), _boxes(on_gpu)
    gpu_scores = np.array([s.score for s in on_gpu.suggestions])
    for box, suggestion in zip(cpu_boxes, on_cpu.suggestions, strict=True):
        if suggestion.score > 0.3:
            match = _iou(box, gpu_boxes) > 0.95
            assert match.any() and np.abs(gpu_scores[match] - suggestion.score).min() < 0.02
