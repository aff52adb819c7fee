"""``GET /items/{item_id}/labels`` (the label set an editor may give) and the 503 that
missing weights answer, over HTTP on a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from engine.config import REPO_CONFIG_DIR, Settings, get_model_spec, load_settings
from engine.ingest import ingest
from engine.serving.app import create_app
from engine.store import Store
from engine.types import Item, Prediction

NER_TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC")


def _predict(store: Store, item_id: str, version: str, class_names: tuple[str, ...]) -> None:
    probs = np.zeros((0, len(class_names)), np.float32)
    store.save_predictions([Prediction(item_id, "m", version, (), probs, class_names)], [0.5])


def test_labels_are_the_latest_predictions_class_names(client: TestClient, store: Store) -> None:
    store.add_items([Item("img", "image", uri="/data/img.png")], [None])
    assert client.get("/items/img/labels").json() == {"labels": []}  # no prediction yet
    _predict(store, "img", "v1", ("cat", "dog", "car"))
    assert client.get("/items/img/labels").json() == {"labels": ["cat", "dog", "car"]}
    _predict(store, "img", "v2", ("person", "bicycle"))
    assert client.get("/items/img/labels").json() == {"labels": ["person", "bicycle"]}


def test_tagger_tags_collapse_to_entity_types(client: TestClient, store: Store) -> None:
    store.add_items([Item("txt", "text", text="Ada Lovelace lived in London")], [None])
    _predict(store, "txt", "ner-v1", NER_TAGS)
    assert client.get("/items/txt/labels").json() == {"labels": ["PER", "LOC", "MISC"]}
    store.add_items([Item("bilou", "text", text="x")], [None])
    _predict(store, "bilou", "ner-v2", ("O", "U-ORG", "B-ORG", "L-ORG", "S-GPE", "E-GPE"))
    assert client.get("/items/bilou/labels").json() == {"labels": ["ORG", "GPE"]}


def test_labels_of_an_unknown_item_are_404(client: TestClient) -> None:
    response = client.get("/items/nope/labels")
    assert response.status_code == 404
    assert response.json()["detail"] == "item 'nope' not found"


def test_labels_need_a_token(settings: Settings, store: Store) -> None:
    store.add_items([Item("img", "image", uri="/data/img.png")], [None])
    with TestClient(create_app(settings, store)) as anonymous:
        assert anonymous.get("/items/img/labels").status_code == 401


# -- missing weights: 503 ------------------------------------------------------------


@pytest.fixture
def no_weights(tmp_path: Path, store: Store) -> Iterator[tuple[TestClient, str, Settings]]:
    """The app on an empty models folder with the shipped specs, and one image item."""
    settings = load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path],
        config_dir=REPO_CONFIG_DIR,
        models_dir=tmp_path / "empty-models",
        api_token="test-token",
    )
    (tmp_path / "empty-models").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    ingest(store, str(tmp_path / "a.png"), [tmp_path])
    item_id = store.list_items()[0].item_id
    headers = {"Authorization": "Bearer test-token"}
    with TestClient(create_app(settings, store), headers=headers) as client:
        yield client, item_id, settings


def test_segment_without_weights_is_503_naming_the_pull_command(
    no_weights: tuple[TestClient, str, Settings],
) -> None:
    client, item_id, settings = no_weights
    assert settings.interactive_model == "litemedsam"
    spec = get_model_spec(settings, "litemedsam")
    assert spec.asset is not None  # the real spec: a weight file to pull
    body = {"item_id": item_id, "box_xyxy": [5, 5, 40, 30]}
    for _ in range(2):  # the second click gets the same answer, not a 500
        response = client.post("/interactive/segment", json=body)
        assert response.status_code == 503, response.text
        detail = response.json()["detail"]
        assert "run `labelengine models pull litemedsam`" in detail
        assert "weights for model 'litemedsam' are missing" in detail
    assert client.get("/health").status_code == 200
    assert client.get(f"/items/{item_id}").status_code == 200  # the rest still works
