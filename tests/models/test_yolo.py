"""YoloDetector on a tiny random YOLO11 (real architecture): the prediction contract.

The letterbox is in test_letterbox.py, real yolo11n weights in test_yolo_real.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import box_array, image_items, random_images, tiny_yolo

from engine.imaging.decode import decode_image
from engine.models.yolo import YoloDetector, yolo_model_version
from engine.types import Item

NUM_CLASSES = 5
IMGSZ_PX = 128
MIXED_SIZES = ((50, 80), (120, 60), (97, 97), (33, 200))  # (height, width)


@pytest.fixture(scope="module")
def tiny() -> YoloDetector:
    """Real YOLO11n architecture, random weights; conf_floor 0 so every image has boxes.

    NCHW: oneDNN's NHWC kernels pay a set-up cost per new input shape, which
    dominates at these tiny sizes; the NHWC default is covered separately.
    """
    return tiny_yolo(
        num_classes=NUM_CLASSES,
        conf_floor=0.0,
        imgsz_px=IMGSZ_PX,
        max_det=40,
        channels_last=False,
    )


def test_mixed_size_batch_honours_the_prediction_contract(tiny: YoloDetector) -> None:
    images = random_images(np.random.default_rng(0), MIXED_SIZES)
    predictions = tiny.predict(image_items(len(images)), images)

    assert [p.item_id for p in predictions] == [f"img-{i}" for i in range(len(images))]
    for prediction, image in zip(predictions, images, strict=True):
        height_px, width_px = image.shape[:2]
        n_boxes = len(prediction.suggestions)
        assert 0 < n_boxes <= 40
        assert prediction.probs.shape == (n_boxes, NUM_CLASSES)
        assert prediction.probs.dtype == np.float32
        assert prediction.class_names == tiny.class_names
        assert len(tiny.class_names) == NUM_CLASSES
        boxes = box_array(prediction)
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
        detector = tiny_yolo(
            num_classes=NUM_CLASSES,
            conf_floor=0.0,
            imgsz_px=IMGSZ_PX,
            max_det=30,
            letterbox_mode=letterbox_mode,
            channels_last=False,
        )
    images = random_images(np.random.default_rng(1), MIXED_SIZES)
    batched = detector.predict(image_items(len(images)), images)
    for i, image in enumerate(images):
        alone = detector.predict(image_items(len(images))[i : i + 1], [image])[0]
        np.testing.assert_allclose(box_array(alone), box_array(batched[i]), atol=1e-2)
        np.testing.assert_allclose(alone.probs, batched[i].probs, atol=1e-4)


def test_channels_last_and_contiguous_layouts_agree() -> None:
    import torch

    detectors = []
    for channels_last in (True, False):
        torch.manual_seed(0)  # the same random weights for both
        detectors.append(
            tiny_yolo(
                num_classes=NUM_CLASSES,
                conf_floor=0.0,
                imgsz_px=64,
                max_det=20,
                channels_last=channels_last,
            )
        )
    nhwc, nchw = detectors
    assert nhwc.version == nchw.version  # same weights and config: same version
    images = random_images(np.random.default_rng(9), ((64, 48), (30, 64)))
    for a, b in zip(
        nhwc.predict(image_items(2), images), nchw.predict(image_items(2), images), strict=True
    ):
        np.testing.assert_allclose(box_array(a), box_array(b), atol=1e-2)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)


def test_concurrent_calls_with_different_shapes_match_sequential_ones(tiny: YoloDetector) -> None:
    from concurrent.futures import ThreadPoolExecutor

    images = random_images(np.random.default_rng(8), MIXED_SIZES)
    sequential = [tiny.predict(image_items(1), [image])[0] for image in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda image: tiny.predict(image_items(1), [image])[0], images))
    for alone, threaded in zip(sequential, concurrent, strict=True):
        np.testing.assert_allclose(box_array(alone), box_array(threaded), atol=1e-3)


def test_empty_and_mismatched_inputs(tiny: YoloDetector) -> None:
    assert tiny.predict([], []) == []
    assert tiny.predict([]) == []
    images = random_images(np.random.default_rng(2), ((40, 40),))
    with pytest.raises(ValueError, match="got 1 inputs for 2 items"):
        tiny.predict(image_items(2), images)


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
        tiny.predict(image_items(1), [image])
    assert "img-0" in str(info.value)


def test_reads_local_files_when_no_inputs_are_given(tiny: YoloDetector, tmp_path: Path) -> None:
    image = random_images(np.random.default_rng(3), ((70, 110),))[0]
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
    detector = tiny_yolo(
        num_classes=3,
        conf_floor=0.99,
        imgsz_px=64,
        version="v7",
        channels_last=False,
    )
    prediction = detector.predict(
        image_items(1), random_images(np.random.default_rng(4), ((64, 64),))
    )[0]
    assert prediction.model_version == "v7"
    assert prediction.suggestions == ()
    assert prediction.probs.shape == (0, 3)


def test_nms_free_yolo26_head_still_returns_every_class_score() -> None:
    detector = tiny_yolo(
        "yolo26n.yaml",
        num_classes=4,
        conf_floor=0.0,
        imgsz_px=64,
        channels_last=False,
    )
    prediction = detector.predict(
        image_items(1), random_images(np.random.default_rng(5), ((64, 96),))
    )[0]
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
    first = tiny_yolo(num_classes=2, imgsz_px=64)
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]{8}", first.version)
    assert first.version == yolo_model_version(first.version[:12] + "0" * 52, first.config())
    renamed = tiny_yolo(num_classes=2, imgsz_px=64, class_names=("a", "b"))
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


def test_png_and_jpeg_bytes_decode_for_the_detector(tiny: YoloDetector) -> None:
    image = random_images(np.random.default_rng(7), ((40, 60),))[0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    decoded = decode_image(buffer.getvalue())
    assert not decoded.flags.writeable  # read-only arrays from the decoder are fine
    prediction = tiny.predict(image_items(1), [decoded])[0]
    assert prediction.suggestions
