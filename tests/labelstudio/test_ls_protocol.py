"""Label Studio's ML-backend protocol around predictions, replayed with the exact request
shapes of LS 1.23: model loading, auth, ``/versions``, configs the engine cannot serve,
and interactive (smart keypoint) clicks answered by the segmenter.

Real parts throughout: the FastAPI app in-process, a SQLite store, a tiny random
YOLO11, spaCy's small English NER and a tiny random LiteMedSAM (tests/ml_backend.py).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from ml_backend import (
    BASIC,
    IMAGE_CONFIG,
    backend,
    clear_label_studio_env,
    image_task,
    keypoint,
    model_holder,
    png,
    predict,
    shared_sam,
    spacy_tagger,
    tiny_detector,
)

from engine.config import Settings
from engine.labelstudio.brush_rle import brush_rle_to_mask
from engine.labelstudio.models import ModelHolder
from engine.models.base import Model
from engine.serving.app import create_app
from engine.store import Store


@pytest.fixture(autouse=True)
def no_label_studio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_label_studio_env(monkeypatch)


@pytest.fixture
def models(settings: Settings) -> ModelHolder:
    return model_holder(settings)


@pytest.fixture
def client(settings: Settings, store: Store, models: ModelHolder) -> Iterator[TestClient]:
    with backend(settings, store, models) as test_client:
        yield test_client


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


def test_interactive_keypoint_gives_one_brush_region_from_the_cached_embedding(
    client: TestClient, tmp_path: Path
) -> None:
    from label_studio_sdk.converter.brush import decode_rle

    (tmp_path / "e.png").write_bytes(png(48, 64, 4))
    task = [image_task(5, str(tmp_path / "e.png"))]
    sam = shared_sam()
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
