"""Label Studio ``/predict`` with mask controls: the detector chained with the segmenter.

A config with ``BrushLabels`` / ``PolygonLabels`` on the ``<Image>`` is served by
detector -> segmenter (the server's interactive SAM, cache kept) under the version
``labelengine prelabel --model <detector> --segmenter <segmenter>`` records. Real
parts: the FastAPI app in-process, a SQLite store, a tiny random YOLO11 (class biases
set so it finds cats, trees and cars) and a tiny random LiteMedSAM (its IoU head
biased so masks pass the display threshold), named by model specs in a temporary
config folder; yolo11n + LiteMedSAM's real weights on bus.jpg when present (slow).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import io
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from engine.config import REPO_CONFIG_DIR, ModelSpec, Settings, load_settings
from engine.labelstudio.brush_rle import brush_rle_to_mask
from engine.labelstudio.models import ModelHolder
from engine.models.chain import ChainedModel
from engine.models.sam.segmenter import SamSegmenter
from engine.models.versioning import spec_version
from engine.models.yolo import YoloDetector
from engine.prelabel.job import create_prelabel_job
from engine.review.scoring import image_score
from engine.segment.service import InteractiveSegmenter
from engine.serving.app import create_app
from engine.store import Store
from engine.types import Box, Item, Mask

BASIC = {"Authorization": "Basic " + base64.b64encode(b"labelengine:test-token").decode()}
CLASSES = ("cat", "dog", "car", "tree")
DET_SPEC = {"name": "tinydet", "family": "yolo", "params": {"arch_yaml": "yolo11n.yaml"}}
SAM_SPEC = {"name": "tinysam", "family": "sam", "params": {"variant": "litemedsam", "tiny": True}}
RECT = """  <RectangleLabels name="box" toName="image">
    <Label value="Animal" predicted_values="cat,dog"/>
    <Label value="Vehicle" predicted_values="car"/>
  </RectangleLabels>"""
BRUSH = """  <BrushLabels name="brush" toName="image">
    <Label value="Animal" predicted_values="cat,dog"/>
  </BrushLabels>"""  # no Vehicle: a car's mask must not come back as a second rectangle
POLYGON = """  <PolygonLabels name="outline" toName="image">
    <Label value="Animal" predicted_values="cat,dog"/>
  </PolygonLabels>"""
KEYPOINT = """  <KeyPointLabels name="kp" toName="image" smart="true">
    <Label value="Animal"/>
  </KeyPointLabels>"""
PROJECT = "12.1718000000"


def labeling_config(*controls: str) -> str:
    return "\n".join(['<View>\n  <Image name="image" value="$image"/>', *controls, "</View>"])


def png(height: int, width: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@functools.cache
def tiny_detector() -> YoloDetector:
    import torch

    detector = YoloDetector(
        arch_yaml="yolo11n.yaml",
        num_classes=len(CLASSES),
        class_names=CLASSES,
        imgsz_px=64,
        max_det=20,
        device="cpu",
        name="tinydet",
        version=spec_version(ModelSpec.model_validate(DET_SPEC)),
    )
    net: Any = detector._net
    head = net.model[-1]  # one winning class per level: cat, tree, car
    for level, winner in enumerate((0, 3, 2)):
        bias = torch.full((len(CLASSES),), 1.0)
        bias[winner] = 2.0
        with torch.no_grad():
            head.cv3[level][-1].bias.copy_(bias)
    return detector


def tiny_sam() -> SamSegmenter:
    import torch

    sam = SamSegmenter(
        "litemedsam",
        tiny=True,
        device="cpu",
        name="tinysam",
        version=spec_version(ModelSpec.model_validate(SAM_SPEC)),
    )
    with torch.no_grad():  # random weights predict IoU ~0: every mask would score 0
        sam.sam.mask_decoder.iou_prediction_head.layers[-1].bias.fill_(0.9)
    return sam


class UnusableDetector:
    """A detector that must not run (the stored predictions must answer)."""

    name = "tinydet"

    def __init__(self, version: str) -> None:
        self.version = version

    def predict(self, items: Sequence[Item], inputs: Sequence[Any] | None = None) -> list[Any]:
        raise AssertionError("the detector ran, but the job's predictions were stored")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config_dir = tmp_path / "configs"
    (config_dir / "models").mkdir(parents=True)
    (config_dir / "jobs").mkdir()
    shutil.copy(REPO_CONFIG_DIR / "jobs" / "prelabel.yaml", config_dir / "jobs" / "prelabel.yaml")
    for spec in (DET_SPEC, SAM_SPEC):
        (config_dir / "models" / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    return load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path],
        config_dir=config_dir,
        api_token="test-token",
        default_detector="tinydet",
        interactive_model="tinysam",
    )


def client_for(
    settings: Settings, store: Store, sam: SamSegmenter, detector: Any = None
) -> TestClient:
    models = ModelHolder(settings, detector=detector or tiny_detector())
    segmenter = InteractiveSegmenter(settings, build=lambda: sam)
    return TestClient(create_app(settings, store, segmenter, models))


def setup(http: TestClient, config: str) -> str:
    body = {"project": PROJECT, "schema": config, "hostname": "http://localhost:8080"}
    response = http.post("/setup", json=body, headers=BASIC)
    assert response.status_code == 200, response.text
    return str(response.json()["model_version"])


def predict(
    http: TestClient, tasks: list[dict[str, Any]], config: str, context: Any = None
) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"tasks": tasks, "label_config": config, "project": PROJECT}
    if context is not None:
        body["params"] = {"context": context}
    response = http.post("/predict", json=body, headers=BASIC)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    assert len(results) == len(tasks)
    return results


def image_tasks(tmp_path: Path, sizes_hw: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    tasks = []
    for n, (height, width) in enumerate(sizes_hw):
        path = tmp_path / f"t{n}.png"
        path.write_bytes(png(height, width, seed=100 + n))
        tasks.append({"id": n + 1, "data": {"image": str(path)}})
    return tasks


def item_id_of(task: dict[str, Any]) -> str:
    return hashlib.sha256(Path(task["data"]["image"]).read_bytes()).hexdigest()[:24]


def suggestion_of(store: Store, item_id: str, version: str, region_id: str) -> Any:
    """The stored suggestion (of ``version``) behind a result id ``s<id>[.n]``."""
    records = store.suggestions_for(item_id, model_version=version)
    return {f"s{r.suggestion_id}": r for r in records}[region_id.split(".")[0]]


def parent_of(store: Store, item_id: str, version: str, mask: Any) -> Any:
    """The stored box a chained mask was made from."""
    records = store.suggestions_for(item_id, model_version=version)
    return next(r for r in records if r.position == mask.suggestion.parent_index)


def click(x_pct: float, y_pct: float, size_wh: tuple[int, int]) -> dict[str, Any]:
    """A smart keypoint as the editor sends it in ``params.context.result``."""
    return {
        "original_width": size_wh[0],
        "original_height": size_wh[1],
        "value": {"x": x_pct, "y": y_pct, "width": 0.5, "keypointlabels": ["Animal"]},
        "is_positive": True,
        "from_name": "kp",
        "to_name": "image",
        "type": "keypointlabels",
    }


def by_type(result: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in result if r["type"] == kind]


def expected_job_version(store: Store, settings: Settings) -> str:
    """What ``labelengine prelabel --model <detector> --segmenter <segmenter>`` records."""
    job = create_prelabel_job(
        store,
        settings,
        model_name=settings.default_detector,
        segmenter_name=settings.interactive_model,
    )
    return str(job.model_version)


# -- tiny random models ------------------------------------------------------------------


def test_rectangles_and_brushes_come_from_the_chain(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    from label_studio_sdk.converter.brush import decode_rle

    config = labeling_config(RECT, BRUSH, KEYPOINT)
    sam = tiny_sam()
    tasks = image_tasks(tmp_path, [(48, 64), (30, 90)])
    with client_for(settings, store, sam) as http:
        version = setup(http, config)
        assert version == expected_job_version(store, settings)
        assert version != tiny_detector().version and version.startswith("tinydet-")
        results = predict(http, tasks, config)
        versions = http.get("/versions", headers=BASIC).json()["versions"]
    assert version in versions and tiny_detector().version in versions
    assert sam.images_encoded == 2
    for task, out in zip(tasks, results, strict=True):
        assert out["model_version"] == version
        item_id = item_id_of(task)
        height, width = np.asarray(Image.open(task["data"]["image"])).shape[:2]
        rects, brushes = (
            by_type(out["result"], "rectanglelabels"),
            by_type(out["result"], "brushlabels"),
        )
        assert rects and brushes
        assert {r["type"] for r in out["result"]} == {"rectanglelabels", "brushlabels"}
        rect_ids = {r["id"] for r in rects}
        for rect in rects:  # every rectangle is a detector box, none a mask's outline
            record = suggestion_of(store, item_id, version, rect["id"])
            assert isinstance(record.suggestion.region, Box)
        for brush in brushes:
            assert brush["value"]["brushlabels"] == ["Animal"]
            assert (brush["original_width"], brush["original_height"]) == (width, height)
            flat = decode_rle(brush["value"]["rle"])
            assert flat.size == height * width * 4
            mask = brush_rle_to_mask(brush["value"]["rle"], height, width)
            assert np.array_equal(mask, flat.reshape(height, width, 4)[..., 3] > 0)
            record = suggestion_of(store, item_id, version, brush["id"])
            assert isinstance(record.suggestion.region, Mask)
            box = parent_of(store, item_id, version, record)
            assert box.suggestion.label == record.suggestion.label == "cat"
            assert f"s{box.suggestion_id}" in rect_ids  # its box is shown as a rectangle
        stored = store.suggestions_for(item_id, model_version=version)
        masks = [r.suggestion for r in stored if isinstance(r.suggestion.region, Mask)]
        assert "car" in {m.label for m in masks}  # masked, but no brush label: not shown
    # Served from the store the second time: same regions, nothing run again.
    count, calls = store.count_predictions(), sam.encoder_calls
    with client_for(settings, store, sam) as http:
        assert predict(http, tasks, config) == results
    assert store.count_predictions() == count and sam.encoder_calls == calls


def test_a_rejected_box_takes_its_mask_out_of_later_predictions(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    from engine.types import Feedback

    config = labeling_config(RECT, BRUSH)
    sam = tiny_sam()
    tasks = image_tasks(tmp_path, [(48, 64)])
    with client_for(settings, store, sam) as http:
        version = setup(http, config)
        (first,) = predict(http, tasks, config)
        brush = by_type(first["result"], "brushlabels")[0]
        box = parent_of(
            store,
            item_id_of(tasks[0]),
            version,
            suggestion_of(store, item_id_of(tasks[0]), version, brush["id"]),
        )
        store.record_feedback(
            Feedback(item_id_of(tasks[0]), "reject", "t-1", suggestion_id=box.suggestion_id)
        )
        (second,) = predict(http, tasks, config)
    ids = {r["id"] for r in second["result"]}
    assert f"s{box.suggestion_id}" not in ids and brush["id"] not in ids
    assert len(second["result"]) < len(first["result"])


def test_polygon_labels_come_back_as_outlines_in_percent(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    config = labeling_config(RECT, POLYGON)
    [task] = image_tasks(tmp_path, [(40, 72)])
    with client_for(settings, store, tiny_sam()) as http:
        version = setup(http, config)
        [out] = predict(http, [task], config)
    assert version == expected_job_version(store, settings)
    assert out["model_version"] == version
    polygons = by_type(out["result"], "polygonlabels")
    assert polygons and by_type(out["result"], "rectanglelabels")
    for region in polygons:
        assert (region["from_name"], region["to_name"]) == ("outline", "image")
        assert (region["original_width"], region["original_height"]) == (72, 40)
        value = region["value"]
        assert value["polygonlabels"] == ["Animal"] and value["closed"] is True
        points = np.asarray(value["points"], dtype=float)
        assert points.ndim == 2 and points.shape[1] == 2 and len(points) >= 3
        assert points.min() >= 0.0 and points.max() <= 100.0 + 1e-6
        assert points[:, 0].max() > 100.0 * 2 / 72  # percent, not pixels or fractions


def test_brush_labels_alone_get_masks_and_no_rectangles(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    config = labeling_config(BRUSH)
    [task] = image_tasks(tmp_path, [(48, 48)])
    with client_for(settings, store, tiny_sam()) as http:
        version = setup(http, config)
        [out] = predict(http, [task], config)
    assert version == expected_job_version(store, settings)
    assert out["result"] and {r["type"] for r in out["result"]} == {"brushlabels"}
    boxes = [
        r
        for r in store.suggestions_for(item_id_of(task), model_version=version)
        if isinstance(r.suggestion.region, Box)
    ]
    assert boxes  # stored with the prediction, but no control shows them


def test_a_click_after_predict_reuses_the_embedding_the_chain_computed(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    config = labeling_config(RECT, BRUSH, KEYPOINT)
    [task] = image_tasks(tmp_path, [(48, 64)])
    sam = tiny_sam()
    with client_for(settings, store, sam) as http:
        predict(http, [task], config)
        assert (sam.encoder_calls, sam.images_encoded) == (1, 1)
        [out] = predict(http, [task], config, {"result": [click(40.0, 50.0, (64, 48))]})
    assert sam.encoder_calls == 1  # the click ran the decoder only
    assert out["model_version"] == sam.version
    [region] = out["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Animal"]


def test_a_job_stored_chained_prediction_is_served_without_running_a_model(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    config = labeling_config(RECT, BRUSH)
    [task] = image_tasks(tmp_path, [(48, 64)])
    job = create_prelabel_job(
        store, settings, model_name="tinydet", segmenter_name="tinysam", limit=None
    )
    # What the job's model actor writes: the chain under the job's version.
    path = Path(task["data"]["image"])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    item = Item(digest[:24], "image", uri=str(path), metadata={"key": digest})
    chain = ChainedModel(tiny_detector(), tiny_sam(), version=str(job.model_version))
    [prediction] = chain.predict([item], [np.asarray(Image.open(path).convert("RGB"))])
    store.add_items([item], [digest])
    store.save_predictions([prediction], [image_score(prediction)], job.job_id)

    sam = tiny_sam()
    detector = UnusableDetector(tiny_detector().version)
    with client_for(settings, store, sam, detector) as http:
        version = setup(http, config)
        [out] = predict(http, [task], config)
    assert version == job.model_version == out["model_version"]
    assert sam.encoder_calls == 0 and store.count_predictions() == 1
    shown = {r["id"] for r in out["result"]}
    stored = store.suggestions_for(item.item_id, model_version=version)
    masks = [r for r in stored if isinstance(r.suggestion.region, Mask)]
    assert by_type(out["result"], "brushlabels") and by_type(out["result"], "rectanglelabels")
    assert any(f"s{r.suggestion_id}" in shown for r in masks)


def test_a_config_without_mask_controls_keeps_the_detector_alone(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    config = labeling_config(RECT, KEYPOINT)
    [task] = image_tasks(tmp_path, [(48, 64)])
    with client_for(settings, store, tiny_sam()) as http:
        version = setup(http, config)
        [out] = predict(http, [task], config)
        assert not http.app.state.segmenter.loaded  # type: ignore[attr-defined]
        versions = http.get("/versions", headers=BASIC).json()["versions"]
    assert version == out["model_version"] == tiny_detector().version
    assert versions == [version]  # no tagger configured; the segmenter is not loaded
    assert out["result"] and {r["type"] for r in out["result"]} == {"rectanglelabels"}


def test_masks_need_a_sam_interactive_model(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"interactive_model": "tinydet"})
    config = labeling_config(RECT, BRUSH)
    [task] = image_tasks(tmp_path, [(48, 64)])
    with client_for(settings, store, tiny_sam()) as http:
        version = setup(http, config)
        [out] = predict(http, [task], config)
    assert version == out["model_version"] == tiny_detector().version
    assert {r["type"] for r in out["result"]} == {"rectanglelabels"}


# -- real weights ------------------------------------------------------------------------


@pytest.mark.slow
def test_real_yolo11n_and_litemedsam_mask_the_bus_photo(store: Store, tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path / "real",
        data_roots=[tmp_path],
        config_dir=REPO_CONFIG_DIR,
        api_token="test-token",
    )
    models_dir = settings.resolved_models_dir
    for weights in (
        models_dir / "yolo11n" / "yolo11n.pt",
        models_dir / "litemedsam" / "lite_medsam.pth",
    ):
        if not weights.is_file():
            pytest.skip(f"real weights not found at {weights} (labelengine models pull)")
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None and spec.origin is not None
    bus = tmp_path / "bus.jpg"
    bus.write_bytes((Path(spec.origin).parent / "assets" / "bus.jpg").read_bytes())
    labels = '<Label value="Person" predicted_values="person"/>' + (
        '<Label value="Vehicle" predicted_values="bus,car,truck"/>'
    )
    config = labeling_config(
        f'<RectangleLabels name="box" toName="image">{labels}</RectangleLabels>',
        f'<BrushLabels name="brush" toName="image">{labels}</BrushLabels>',
        KEYPOINT,
    )
    task = {"id": 1, "data": {"image": str(bus)}}
    with TestClient(create_app(settings, store, models=ModelHolder(settings))) as http:
        version = setup(http, config)
        assert version == expected_job_version(store, settings)
        [out] = predict(http, [task], config)
        sam = http.app.state.segmenter.model  # type: ignore[attr-defined]
        calls = sam.encoder_calls
        [clicked] = predict(http, [task], config, {"result": [click(50.0, 60.0, (810, 1080))]})
        assert sam.encoder_calls == calls  # the chain's embedding answered the click
    assert clicked["result"] and clicked["result"][0]["type"] == "brushlabels"
    assert out["model_version"] == version
    rects, brushes = (
        by_type(out["result"], "rectanglelabels"),
        by_type(out["result"], "brushlabels"),
    )
    assert sum(r["value"]["rectanglelabels"] == ["Person"] for r in rects) >= 3
    assert sum(r["value"]["brushlabels"] == ["Person"] for r in brushes) >= 3
    assert any(r["value"]["brushlabels"] == ["Vehicle"] for r in brushes)
    item_id = item_id_of(task)
    rect_ids = {r["id"] for r in rects}
    for brush in brushes:
        mask = brush_rle_to_mask(brush["value"]["rle"], 1080, 810)
        record = suggestion_of(store, item_id, version, brush["id"])
        parent = parent_of(store, item_id, version, record)
        assert f"s{parent.suggestion_id}" in rect_ids
        box = parent.suggestion.region
        assert isinstance(box, Box) and mask.sum() > 100
        x1, y1 = int(box.x1) - 2, int(box.y1) - 2
        inside = mask[max(y1, 0) : int(np.ceil(box.y2)) + 2, max(x1, 0) : int(np.ceil(box.x2)) + 2]
        assert inside.sum() / mask.sum() >= 0.9, (brush["value"]["brushlabels"], box)
