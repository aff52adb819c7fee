"""Label Studio's ``/predict`` for image and text tasks, replayed with the exact request
shapes of LS 1.23: the detector's boxes, stored suggestions, per-task failures, spans.

Real parts throughout: the FastAPI app in-process, a SQLite store, a real HTTP
server standing in for Label Studio's media, a tiny random YOLO11 (its class
biases set per level so it finds mapped and unmapped classes) and spaCy's small
English NER (tests/ml_backend.py). Real yolo11n weights: test_ls_real_weights.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from media_server import MediaServer, serve_media
from ml_backend import (
    BASIC,
    BOX_CONFIG,
    CLASSES,
    PROJECT,
    TEXT_CONFIG,
    backend,
    clear_label_studio_env,
    image_task,
    model_holder,
    png,
    predict,
    setup,
    spacy_tagger,
    tiny_detector,
)

from engine.config import Settings
from engine.labelstudio.models import ModelHolder
from engine.store import Store
from engine.types import Box, Feedback, Item, Prediction, Suggestion


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


@pytest.fixture
def label_studio() -> Iterator[MediaServer]:
    files = {
        "/data/upload/7/a.png": png(48, 64, 0),
        "/data/upload/7/b.png": png(30, 90, 1),
    }
    with serve_media(MediaServer(files=files, token="owner-token")) as server:
        yield server


def test_three_tasks_one_missing_image_give_three_results_in_order(
    client: TestClient, store: Store, label_studio: MediaServer
) -> None:
    version = setup(client, BOX_CONFIG, label_studio.url)
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


def test_new_predictions_are_scored_under_the_queues_current_policy(
    client: TestClient, store: Store, label_studio: MediaServer
) -> None:
    from engine.review.ranking import remember_policy
    from engine.review.scoring import queue_score
    from engine.sampling.policy import RankPolicy

    policy = RankPolicy(score="least_confidence", reduction="mean")
    remember_policy(store, policy)
    version = setup(client, BOX_CONFIG, label_studio.url)
    predict(client, [image_task(1, "/data/upload/7/a.png")], BOX_CONFIG)
    item_id = hashlib.sha256(label_studio.files["/data/upload/7/a.png"]).hexdigest()[:24]
    stored = store.stored_prediction(item_id)
    assert stored is not None and stored.prediction.model_version == version
    expected = queue_score(stored.prediction, "image", policy)
    assert expected != pytest.approx(queue_score(stored.prediction, "image"))
    assert store.item_score(item_id) == pytest.approx(expected)
