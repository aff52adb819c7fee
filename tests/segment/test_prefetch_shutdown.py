"""The app's shutdown stops the prefetch worker before the interpreter tears torch down.

A real server stopped a few seconds after ``POST /queue/next`` (while the prefetch it
started was still loading LiteMedSAM and encoding the next images) exited with
SIGABRT ("terminate called without an active exception"): ``Prefetcher.close`` joins
the worker for 5 s only, and the worker stops only after the whole request (the leased
image and the next ``prefetch_items``). Here each encode is made slow on purpose.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from engine.config import Settings
from engine.segment.service import InteractiveSegmenter
from engine.serving.app import create_app
from engine.store import Store
from engine.types import Item, Prediction

ENCODE_S = 1.5  # per image; the leased one and the 3 next: longer than close()'s 5 s


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "embedding-prefetch" and t.is_alive()]


def test_shutdown_waits_for_or_stops_the_prefetch_worker(
    settings: Settings, store: Store, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"img-{i}" for i in range(5)]
    store.add_items([Item(i, "image", uri=f"/data/{i}.png") for i in ids], [None] * len(ids))
    store.save_predictions(
        [Prediction(i, "m", "v", (), np.zeros((0, 0), np.float32)) for i in ids],
        [0.9 - 0.1 * k for k in range(len(ids))],
    )
    started = threading.Event()
    encoding: list[str] = []

    def slow_ensure(self: InteractiveSegmenter, store: Store, item_id: str) -> str:
        started.set()
        encoding.append(item_id)
        time.sleep(ENCODE_S)  # stands for loading the model and encoding the image
        encoding.remove(item_id)
        return "encoded"

    monkeypatch.setattr(InteractiveSegmenter, "_prefetch_ensure", slow_ensure)
    assert settings.prefetch_items == 3
    segmenter = InteractiveSegmenter(settings, load_for_prefetch=True)
    assert _prefetch_threads() == []
    try:
        with TestClient(create_app(settings, store, segmenter), headers=auth) as client:
            assert client.post("/queue/next").json()["item_id"] == "img-0"
            assert started.wait(10)
        # the lifespan's shutdown ran segmenter.close(): nothing may still be encoding
        assert encoding == [], f"shutdown returned while the prefetch encodes {encoding}"
        assert _prefetch_threads() == [], "the prefetch worker outlived the app's shutdown"
    finally:
        for thread in _prefetch_threads():
            thread.join(10 * ENCODE_S)
