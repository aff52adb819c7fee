"""The real server: uvicorn on a free loopback port, a real HTTP round trip with httpx."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from engine.config import REPO_CONFIG_DIR, Settings, load_settings
from engine.serving.server import build_server
from engine.store import Store
from engine.types import Box, Item, Prediction, Suggestion


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    settings = load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path],
        config_dir=REPO_CONFIG_DIR,
        api_token="live-token",
        host="127.0.0.1",
        port=_free_port(),
    )
    _seed(settings, tmp_path)
    server = build_server(settings, log_level="warning")
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{settings.host}:{settings.port}", settings
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive(), "uvicorn did not shut down"


def _seed(settings: Settings, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    store = Store(settings.resolved_database_url)
    try:
        store.add_items([Item("a", "image", uri=str(tmp_path / "a.png"))], [None])
        suggestion = Suggestion("cat", 0.7, Box(1, 2, 10, 12), "yolo11n", "yolo11n-v1")
        prediction = Prediction(
            "a",
            "yolo11n",
            "yolo11n-v1",
            (suggestion,),
            np.array([[0.7]], dtype=np.float32),
            ("cat",),
        )
        store.save_predictions([prediction], [0.6])
    finally:
        store.close()


def test_real_http_round_trip(served: tuple[str, Settings], tmp_path: Path) -> None:
    base_url, settings = served
    with httpx.Client(base_url=base_url, timeout=10) as anonymous:
        health = anonymous.get("/health")
        assert health.status_code == 200 and health.json()["items"] == 1
        refused = anonymous.get("/items")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
    headers = {"Authorization": "Bearer live-token", "X-Annotator": "alice"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        lease = client.post("/queue/next")
        assert lease.status_code == 200 and lease.json()["item_id"] == "a"
        image = client.get("/items/a/image")
        assert image.headers["content-type"] == "image/png"
        assert image.content == (tmp_path / "a.png").read_bytes()
        (suggestion,) = client.get("/items/a/suggestions").json()
        assert suggestion["region"]["box_xyxy"] == [1.0, 2.0, 10.0, 12.0]
        body = {
            "client_key": "live-1",
            "item_id": "a",
            "action": "accept",
            "suggestion_id": suggestion["suggestion_id"],
        }
        assert client.post("/feedback", json=body).status_code == 201
        assert client.post("/feedback", json=body).status_code == 200
        assert client.post("/queue/next").json()["item_id"] == "a"  # alice still holds it
        done = {"client_key": "live-2", "item_id": "a", "action": "accept"}
        assert client.post("/feedback", json=done).status_code == 201
        assert client.post("/queue/next").status_code == 204  # labeled: the queue is empty
    store = Store(settings.resolved_database_url)
    try:
        assert [r.feedback.client_key for r in store.feedback_for("a")] == ["live-1", "live-2"]
    finally:
        store.close()
