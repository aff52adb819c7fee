"""``/interactive/segment`` over HTTP with a real (tiny, random) SAM and a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pycocotools import mask as mask_utils
from sqlalchemy import event

from engine.config import Settings
from engine.ingest import ingest
from engine.models.sam.segmenter import SamSegmenter
from engine.segment.service import InteractiveSegmenter
from engine.serving.app import create_app
from engine.store import Store
from engine.types import Box, Feedback, Item, Prediction, Suggestion


@pytest.fixture
def client(settings: Settings, store: Store, tiny_sam: SamSegmenter) -> Iterator[TestClient]:
    tiny_sam.cache.clear()
    app = create_app(settings, store, InteractiveSegmenter(settings, build=lambda: tiny_sam))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def image_id(tmp_path: Path, store: Store) -> str:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    ingest(store, str(tmp_path / "a.png"), [tmp_path])
    return store.list_items()[0].item_id


def test_box_prompt_returns_a_coco_mask_and_second_click_skips_the_encoder(
    client: TestClient, image_id: str, tiny_sam: SamSegmenter, auth: dict[str, str]
) -> None:
    calls = tiny_sam.encoder_calls
    body = {"item_id": image_id, "box_xyxy": [20, 30, 90, 100]}
    first = client.post("/interactive/segment", json=body, headers=auth)
    assert first.status_code == 200, first.text
    out = first.json()
    assert out["prompt"] == "box"
    assert out["encode_ms"] is not None
    mask = out["masks"][0]
    assert mask["size_hw"] == [120, 160]
    decoded = mask_utils.decode({"size": mask["size_hw"], "counts": mask["mask_rle"]})
    assert int(decoded.sum()) == mask["area_px"]
    second = client.post("/interactive/segment", json={**body, "multimask": True}, headers=auth)
    assert second.json()["encode_ms"] is None
    assert len(second.json()["masks"]) == 3
    assert tiny_sam.encoder_calls == calls + 1
    stats = client.get("/interactive/stats", headers=auth).json()
    assert stats["hits"] >= 1 and stats["loaded"] is True


def test_a_click_becomes_the_detector_box_around_it_for_a_box_trained_model(
    client: TestClient, image_id: str, store: Store, auth: dict[str, str]
) -> None:
    click = {"item_id": image_id, "points_xy": [[50, 60]], "point_labels": [1]}
    default = client.post("/interactive/segment", json=click, headers=auth).json()
    assert default["prompt"] == "derived_box:default"
    box = Suggestion("cat", 0.9, Box(30, 40, 80, 90), "yolo", "v1")
    store.save_predictions(
        [Prediction(image_id, "yolo", "v1", (box,), np.array([[0.9]]), ("cat",))], [0.1]
    )
    derived = client.post("/interactive/segment", json=click, headers=auth).json()
    assert derived["prompt"] == "derived_box:detector"
    assert derived["prompt_box_xyxy"] == [30.0, 40.0, 80.0, 90.0]


def test_a_warm_click_reads_the_store_once(
    client: TestClient, image_id: str, store: Store, auth: dict[str, str]
) -> None:
    """One SQL statement per warm click, box or point; a rejected box is no candidate."""
    box = Suggestion("cat", 0.9, Box(30, 40, 80, 90), "yolo", "v1")
    store.save_predictions(
        [Prediction(image_id, "yolo", "v1", (box,), np.array([[0.9]]), ("cat",))], [0.1]
    )
    click = {"item_id": image_id, "points_xy": [[50, 60]], "point_labels": [1]}
    boxed = {"item_id": image_id, "box_xyxy": [20, 30, 90, 100]}
    assert client.post("/interactive/segment", json=boxed, headers=auth).status_code == 200
    statements: list[str] = []

    def count(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        statements.append(sql)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        for body in (boxed, click):
            statements.clear()
            out = client.post("/interactive/segment", json=body, headers=auth).json()
            assert out["encode_ms"] is None
            assert len(statements) == 1, statements
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert out["prompt"] == "derived_box:detector"
    (record,) = store.suggestions_for(image_id)
    store.record_feedback(Feedback(image_id, "reject", "k1", suggestion_id=record.suggestion_id))
    again = client.post("/interactive/segment", json=click, headers=auth).json()
    assert again["prompt"] == "derived_box:default"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"points_xy": [[500, 10]], "point_labels": [1]}, 422, "outside the image"),
        ({}, 422, "prompt is empty"),
        ({"box_xyxy": [10, 10, 5, 5]}, 422, "box"),
    ],
)
def test_bad_prompts_are_4xx_with_a_message(
    client: TestClient, image_id: str, body: dict, status: int, message: str, auth: dict[str, str]
) -> None:
    response = client.post("/interactive/segment", json={"item_id": image_id, **body}, headers=auth)
    assert response.status_code == status
    assert message in response.json()["detail"]


def test_unknown_and_text_items(client: TestClient, store: Store, auth: dict[str, str]) -> None:
    body = {"item_id": "nope", "box_xyxy": [0, 0, 5, 5]}
    assert client.post("/interactive/segment", json=body, headers=auth).status_code == 404
    store.add_items([Item("t1", "text", text="hello")], [None])
    text = client.post("/interactive/segment", json={**body, "item_id": "t1"}, headers=auth)
    assert text.status_code == 422
    assert "not an image" in text.json()["detail"]
    assert client.post("/interactive/segment", json=body).status_code == 401


@pytest.mark.slow
def test_real_litemedsam_segments_the_cup_over_http(
    tmp_path: Path, settings: Settings, store: Store, auth: dict[str, str]
) -> None:
    from skimage import data

    Image.fromarray(data.coffee()).save(tmp_path / "coffee.png")
    ingest(store, str(tmp_path / "coffee.png"), [tmp_path])
    item_id = store.list_items()[0].item_id
    cup_box = [165, 10, 420, 305]
    with TestClient(create_app(settings, store)) as real:
        out = real.post(
            "/interactive/segment", json={"item_id": item_id, "box_xyxy": cup_box}, headers=auth
        ).json()
    assert out["model_version"].startswith("litemedsam-")
    mask = mask_utils.decode(
        {"size": out["masks"][0]["size_hw"], "counts": out["masks"][0]["mask_rle"]}
    )
    x1, y1, x2, y2 = cup_box
    inside = int(mask[y1:y2, x1:x2].sum())
    assert inside / max(int(mask.sum()), 1) > 0.9
    assert 0.3 < inside / ((x2 - x1) * (y2 - y1)) < 0.95
