"""Label Studio's ML-backend protocol, replayed with the exact request shapes of LS 1.23.

Real parts throughout: the FastAPI app in-process, a SQLite store, a real HTTP
server standing in for Label Studio's media, a tiny random YOLO11 (its class
biases set per level so it finds mapped and unmapped classes), spaCy's small
English NER, a tiny random LiteMedSAM, and yolo11n's real weights when present.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from media_server import MediaServer, serve_media
from PIL import Image

from engine.config import REPO_CONFIG_DIR, Settings, model_specs
from engine.labelstudio.brush_rle import brush_rle_to_mask
from engine.labelstudio.models import ModelHolder
from engine.models.base import Model
from engine.models.sam.segmenter import SamSegmenter
from engine.models.yolo import YoloDetector
from engine.segment.service import InteractiveSegmenter
from engine.serving.app import create_app
from engine.store import Store
from engine.types import Box, Feedback, Item, Prediction, Suggestion

BASIC = {"Authorization": "Basic " + base64.b64encode(b"labelengine:test-token").decode()}
CLASSES = ("cat", "dog", "car", "tree")
IMAGE_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <RectangleLabels name="box" toName="image">
    <Label value="Animal" predicted_values="cat,dog"/>
    <Label value="Vehicle" predicted_values="car"/>
  </RectangleLabels>
  <BrushLabels name="brush" toName="image">
    <Label value="Thing"/>
    <Label value="Animal"/>
  </BrushLabels>
  <KeyPointLabels name="kp" toName="image" smart="true">
    <Label value="Animal"/>
    <Label value="Plant"/>
  </KeyPointLabels>
</View>"""
# No mask control: served by the detector alone (BrushLabels / PolygonLabels chain the
# segmenter: tests/test_ls_protocol_masks.py).
BOX_CONFIG = (
    IMAGE_CONFIG.split("  <BrushLabels")[0]
    + "  <KeyPointLabels"
    + IMAGE_CONFIG.split("  <KeyPointLabels")[1]
)
TEXT_CONFIG = """<View>
  <Labels name="ner" toName="text">
    <Label value="Person" predicted_values="PERSON"/>
    <Label value="Place" predicted_values="GPE,LOC"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""
PROJECT = "7.1718000000"


def png(height: int, width: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@functools.cache
def tiny_detector() -> YoloDetector:
    detector = YoloDetector(
        arch_yaml="yolo11n.yaml",
        num_classes=len(CLASSES),
        class_names=CLASSES,
        imgsz_px=64,
        max_det=20,
        device="cpu",
        name="tiny-yolo",
    )
    import torch

    # Random weights score every class near 0; give each level of the head its own
    # winning class (cat, tree, car) so the detector finds mapped and unmapped classes.
    head = detector._net.model[-1]
    for level, winner in enumerate((0, 3, 2)):
        bias = torch.full((len(CLASSES),), 1.0)
        bias[winner] = 2.0
        with torch.no_grad():
            head.cv3[level][-1].bias.copy_(bias)
    return detector


@functools.cache
def spacy_tagger() -> Model:
    from engine.models.registry import build_model

    return build_model(model_specs(REPO_CONFIG_DIR)["spacy-sm"], Path("/nonexistent"))


@functools.cache
def tiny_sam() -> SamSegmenter:
    return SamSegmenter("litemedsam", tiny=True, device="cpu", name="sam-tiny")


@pytest.fixture(autouse=True)
def no_label_studio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)


@pytest.fixture
def models(settings: Settings) -> ModelHolder:
    return ModelHolder(settings, detector=tiny_detector(), build=lambda name: spacy_tagger())


@pytest.fixture
def client(settings: Settings, store: Store, models: ModelHolder) -> Iterator[TestClient]:
    segmenter = InteractiveSegmenter(settings, build=tiny_sam)
    with TestClient(create_app(settings, store, segmenter, models)) as test_client:
        yield test_client


@pytest.fixture
def label_studio() -> Iterator[MediaServer]:
    files = {
        "/data/upload/7/a.png": png(48, 64, 0),
        "/data/upload/7/b.png": png(30, 90, 1),
    }
    with serve_media(MediaServer(files=files, token="owner-token")) as server:
        yield server


def setup(client: TestClient, config: str, server: MediaServer | None = None) -> str:
    body = {
        "project": PROJECT,
        "schema": config,
        "hostname": server.url if server else "http://localhost:8080",
        "access_token": "owner-token",
        "extra_params": None,
    }
    response = client.post("/setup", json=body, headers=BASIC)
    assert response.status_code == 200, response.text
    return str(response.json()["model_version"])


def predict(
    client: TestClient, tasks: list[dict[str, Any]], config: str, context: Any = None
) -> list[dict[str, Any]]:
    body = {
        "tasks": tasks,
        "label_config": config,
        "project": PROJECT,
        "params": {"login": None, "password": None, "context": context},
    }
    response = client.post("/predict", json=body, headers=BASIC)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    assert len(results) == len(tasks)
    return results


def image_task(task_id: int, ref: str) -> dict[str, Any]:
    return {"id": task_id, "data": {"image": ref}, "meta": {}, "annotations": [], "predictions": []}


def test_three_tasks_one_missing_image_give_three_results_in_order(
    client: TestClient, store: Store, label_studio: MediaServer
) -> None:
    version = setup(client, BOX_CONFIG, label_studio)
    assert version == tiny_detector().version
    tasks = [
        image_task(1, "/data/upload/7/a.png"),
        image_task(2, "/data/upload/7/missing.png"),
        image_task(3, "/data/upload/7/b.png"),
    ]
    results = predict(client, tasks, BOX_CONFIG)
    assert results[1] == {"result": [], "score": 0.0, "model_version": version + "+failed"}
    # The owner's token from /setup fetched the media.
    assert {auth for _, auth in label_studio.requests} == {"Token owner-token"}
    for out, path, size in ((results[0], "a.png", (64, 48)), (results[2], "b.png", (90, 30))):
        assert out["model_version"] == version
        data = label_studio.files[f"/data/upload/7/{path}"]
        item_id = hashlib.sha256(data).hexdigest()[:24]
        records = store.suggestions_for(item_id, model_version=version)
        shown = [r for r in records if r.suggestion.score >= 0.25]
        assert {r.suggestion.label for r in shown} >= {"cat", "tree"}  # mapped and unmapped
        mapped = [r for r in shown if r.suggestion.label in ("cat", "car")]
        assert [r["id"] for r in out["result"]] == [f"s{r.suggestion_id}" for r in mapped]
        assert 0.0 <= out["score"] <= 1.0
        for region in out["result"]:
            assert region["type"] == "rectanglelabels"
            assert (region["from_name"], region["to_name"]) == ("box", "image")
            assert (region["original_width"], region["original_height"]) == size
            value = region["value"]
            assert value["rectanglelabels"][0] in ("Animal", "Vehicle")
            for start, extent in (("x", "width"), ("y", "height")):
                assert 0.0 <= value[start] <= value[start] + value[extent] <= 100.0 + 1e-6
    # A second call is served from the store: same region ids, no new prediction.
    count = store.count_predictions()
    again = predict(client, tasks, BOX_CONFIG)
    assert store.count_predictions() == count
    assert [r["result"] for r in again] == [r["result"] for r in results]


def test_stored_suggestions_map_by_predicted_values(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    data = png(40, 80, 2)
    path = tmp_path / "c.png"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    store.add_items([Item(digest[:24], "image", uri=str(path))], [digest])
    version = tiny_detector().version
    suggestions = (
        Suggestion("cat", 0.9, Box(8, 4, 48, 24), "tiny-yolo", version),
        Suggestion("tree", 0.8, Box(0, 0, 10, 10), "tiny-yolo", version),  # unmapped
        Suggestion("car", 0.7, Box(0, 0, 20, 20), "tiny-yolo", version),  # rejected below
        Suggestion("dog", 0.1, Box(1, 1, 5, 5), "tiny-yolo", version),  # under threshold
    )
    probs = np.eye(4, dtype=np.float32)[[0, 3, 2, 1]] * 0.9
    store.save_predictions(
        [Prediction(digest[:24], "tiny-yolo", version, suggestions, probs, CLASSES)], [0.42]
    )
    records = store.suggestions_for(digest[:24])
    store.record_feedback(
        Feedback(digest[:24], "reject", "ls-1", suggestion_id=records[2].suggestion_id)
    )
    [out] = predict(client, [image_task(9, str(path))], BOX_CONFIG)
    assert out["score"] == pytest.approx(0.42)
    assert out["model_version"] == version
    [region] = out["result"]
    assert region["id"] == f"s{records[0].suggestion_id}"
    assert region["value"]["rectanglelabels"] == ["Animal"]
    value = {k: region["value"][k] for k in ("x", "y", "width", "height")}
    assert value == pytest.approx({"x": 10.0, "y": 10.0, "width": 50.0, "height": 50.0})
    assert (region["original_width"], region["original_height"]) == (80, 40)


def test_missing_data_key_fails_only_its_task(
    client: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "d.png").write_bytes(png(20, 20, 3))
    version = tiny_detector().version
    tasks = [{"id": 1, "data": {"img": "x.png"}}, image_task(2, str(tmp_path / "d.png"))]
    results = predict(client, tasks, BOX_CONFIG)
    assert results[0] == {"result": [], "score": 0.0, "model_version": version + "+failed"}
    assert results[1]["model_version"] == version
    assert 'no data key "image"' in caplog.text


def test_a_corrupt_image_fails_alone(client: TestClient, tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "good.png").write_bytes(png(30, 30, 6))
    tasks = [image_task(1, str(tmp_path / "bad.png")), image_task(2, str(tmp_path / "good.png"))]
    bad, good = predict(client, tasks, BOX_CONFIG)
    assert bad["model_version"].endswith("+failed") and bad["result"] == []
    assert good["model_version"] == tiny_detector().version and good["result"]


def test_models_load_at_startup_when_asked(settings: Settings, store: Store) -> None:
    built: list[str] = []

    def build(name: str) -> Model:
        built.append(name)
        return tiny_detector() if name == settings.default_detector else spacy_tagger()

    models = ModelHolder(settings, build=build)
    app = create_app(settings, store, models=models, preload_models=True)
    assert built == []
    with TestClient(app):
        assert built == [settings.default_detector, settings.default_tagger]
        assert set(models.loaded()) == {"image", "text"}


@pytest.mark.parametrize("route", ["/setup", "/predict"])
def test_a_config_the_engine_cannot_serve_is_a_422_naming_its_tags(
    client: TestClient, route: str
) -> None:
    config = '<View><Text name="t" value="$text"/><TextArea name="a" toName="t"/></View>'
    body = {"schema": config} if route == "/setup" else {"tasks": [], "label_config": config}
    response = client.post(route, json=body, headers=BASIC)
    assert response.status_code == 422
    assert "TextArea" in response.json()["detail"]


def test_text_tasks_get_entity_spans(client: TestClient, store: Store) -> None:
    version = setup(client, TEXT_CONFIG)
    assert version == spacy_tagger().version
    texts = [
        "Barack Obama visited Paris on Monday with Angela Merkel.",
        "Nothing much happens here.",
    ]
    tasks = [{"id": i, "data": {"text": text}} for i, text in enumerate(texts)]
    results = predict(client, tasks, TEXT_CONFIG)
    assert [r["model_version"] for r in results] == [version, version]
    spans = results[0]["result"]
    labels = [(r["value"]["text"], r["value"]["labels"][0]) for r in spans]
    assert ("Barack Obama", "Person") in labels and ("Paris", "Place") in labels
    for region in spans:
        value = region["value"]
        assert texts[0][value["start"] : value["end"]] == value["text"]
        assert (region["type"], region["from_name"], region["to_name"]) == ("labels", "ner", "text")
    # After /setup, Label Studio may omit the config: the project's is used.
    body = {"tasks": tasks[:1], "project": PROJECT}
    response = client.post("/predict", json=body, headers=BASIC)
    assert response.json()["results"] == results[:1]
    item_id = hashlib.sha256(texts[0].encode()).hexdigest()[:24]
    stored = store.suggestions_for(item_id, model_version=version)
    assert "DATE" in {r.suggestion.label for r in stored}  # found, but unmapped: skipped
    assert len(spans) == sum(r.suggestion.label in ("PERSON", "GPE", "LOC") for r in stored)


def keypoint(x: float, y: float, label: str, positive: bool = True) -> dict[str, Any]:
    return {
        "original_width": 64,
        "original_height": 48,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": [label]},
        "is_positive": positive,
        "id": "kp1",
        "from_name": "kp",
        "to_name": "image",
        "type": "keypointlabels",
        "origin": "manual",
    }


def test_interactive_keypoint_gives_one_brush_region_from_the_cached_embedding(
    client: TestClient, tmp_path: Path
) -> None:
    from label_studio_sdk.converter.brush import decode_rle

    (tmp_path / "e.png").write_bytes(png(48, 64, 4))
    task = [image_task(5, str(tmp_path / "e.png"))]
    sam = tiny_sam()
    [out] = predict(client, task, IMAGE_CONFIG, {"result": [keypoint(40.0, 50.0, "Animal")]})
    assert out["model_version"] == sam.version
    [region] = out["result"]
    assert region["type"] == "brushlabels"
    assert (region["from_name"], region["to_name"]) == ("brush", "image")
    assert region["value"]["brushlabels"] == ["Animal"]
    assert (region["original_width"], region["original_height"]) == (64, 48)
    flat = decode_rle(region["value"]["rle"])
    assert flat.size == 48 * 64 * 4
    mask = brush_rle_to_mask(region["value"]["rle"], 48, 64)
    assert np.array_equal(mask, flat.reshape(48, 64, 4)[..., 3] > 0)
    calls = sam.encoder_calls
    clicks = {"result": [keypoint(10.0, 10.0, "Plant"), keypoint(60.0, 60.0, "Plant", False)]}
    [second] = predict(client, task, IMAGE_CONFIG, clicks)
    assert sam.encoder_calls == calls  # the embedding was cached
    assert second["result"][0]["value"]["brushlabels"] == ["Thing"]  # not a brush label
    box = {
        "type": "rectanglelabels",
        "to_name": "image",
        "value": {"x": 10, "y": 10, "width": 50, "height": 60, "rectanglelabels": ["Animal"]},
    }
    [boxed] = predict(client, task, IMAGE_CONFIG, {"result": [box]})
    assert len(boxed["result"]) == 1 and boxed["result"][0]["type"] == "brushlabels"


def test_interactive_needs_brush_labels_and_a_prompt(client: TestClient, tmp_path: Path) -> None:
    (tmp_path / "f.png").write_bytes(png(20, 20, 5))
    body = {
        "tasks": [image_task(1, str(tmp_path / "f.png"))],
        "label_config": IMAGE_CONFIG.replace("BrushLabels", "PolygonLabels"),
        "params": {"context": {"result": [keypoint(50, 50, "Animal")]}},
    }
    response = client.post("/predict", json=body, headers=BASIC)
    assert response.status_code == 422 and "BrushLabels" in response.json()["detail"]
    body["label_config"] = IMAGE_CONFIG
    body["params"] = {"context": {"result": [{"type": "choices", "value": {"choices": ["x"]}}]}}
    response = client.post("/predict", json=body, headers=BASIC)
    assert response.status_code == 422 and "keypointlabels" in response.json()["detail"]


def test_auth_basic_bearer_and_open_health(settings: Settings, store: Store) -> None:
    built: list[str] = []

    def build(name: str) -> Model:
        built.append(name)
        raise AssertionError("no model may load here")

    app = create_app(settings, store, models=ModelHolder(settings, build=build))
    with TestClient(app) as http:
        start = time.perf_counter()
        assert http.get("/health").status_code == 200
        assert time.perf_counter() - start < 1.0
        assert built == [] and app.state.models.loaded() == {}
        wrong = "Basic " + base64.b64encode(b"labelengine:nope").decode()
        wrong_user = "Basic " + base64.b64encode(b"admin:test-token").decode()
        for header in ({}, {"Authorization": wrong}, {"Authorization": wrong_user}):
            response = http.get("/versions", headers=header)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert http.get("/versions", headers={"Authorization": "Bearer nope"}).status_code == 401
        setup_body = {"schema": IMAGE_CONFIG}
        for header in (BASIC, {"Authorization": "Bearer test-token"}):
            response = http.post("/setup", json=setup_body, headers=header)
            assert response.status_code == 503  # authenticated; the model cannot load
            assert "cannot be loaded" in response.json()["detail"]


def test_versions_lists_detector_and_tagger(client: TestClient) -> None:
    response = client.get("/versions", headers=BASIC)
    assert response.json() == {"versions": [tiny_detector().version, spacy_tagger().version]}


@pytest.mark.slow
def test_real_yolo11n_labels_the_bus_photo(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    import importlib.util

    weights = settings.resolved_models_dir / "yolo11n" / "yolo11n.pt"
    if not weights.is_file():
        pytest.skip(f"real weights not found at {weights} (labelengine models pull yolo11n)")
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None and spec.origin is not None
    bus = tmp_path / "bus.jpg"
    bus.write_bytes((Path(spec.origin).parent / "assets" / "bus.jpg").read_bytes())
    config = BOX_CONFIG.replace('value="Animal" predicted_values="cat,dog"', 'value="Person"')
    config = config.replace('predicted_values="car"', 'predicted_values="bus,car,truck"')
    with TestClient(create_app(settings, store, models=ModelHolder(settings))) as http:
        version = setup(http, config)
        assert version.startswith("yolo11n-")
        [out] = predict(http, [image_task(1, str(bus))], config)
    assert out["model_version"] == version
    labels = [r["value"]["rectanglelabels"][0] for r in out["result"]]
    assert labels.count("Person") >= 3
    vehicles = [r["value"] for r in out["result"] if r["value"]["rectanglelabels"] == ["Vehicle"]]
    assert any(v["width"] * v["height"] > 30 * 30 for v in vehicles)  # the bus, in percent^2
    assert all(r["original_width"] == 810 and r["original_height"] == 1080 for r in out["result"])
