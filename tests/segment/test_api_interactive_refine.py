"""Refinement (previous_mask_id, mask_input_rle) and background prefetch over HTTP,
with a real (tiny, random) SAM, a real store and the real app."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tiny_models
import torch
from fastapi.testclient import TestClient
from PIL import Image

from engine.config import Settings
from engine.imaging.masks import encode_rle, mask_iou
from engine.ingest import ingest
from engine.models.sam.mask_input import (
    MASK_LOGIT,
    decode_rle_mask,
    mask_to_low_res_logits,
    parse_rle_counts,
)
from engine.models.sam.results import upscale_logits
from engine.models.sam.segmenter import SamSegmenter
from engine.review.queue import rescore
from engine.segment.embeddings import item_image_key
from engine.segment.prefetch import Outcome, Prefetcher
from engine.segment.service import InteractiveSegmenter
from engine.serving.app import create_app
from engine.store import Store

BOX = [20, 30, 90, 100]


@pytest.fixture(scope="module")
def tiny_sam() -> SamSegmenter:
    """A tiny random SAM vit_b (not the shared LiteMedSAM): point prompts, mask inputs."""
    return tiny_models.tiny_sam("vit_b", seed=3, name="sam-tiny")


def _photos(folder: Path, store: Store, count: int) -> list[str]:
    rng = np.random.default_rng(1)
    for i in range(count):
        image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / f"p{i}.png")
    ingest(store, str(folder), [folder])
    return [item.item_id for item in store.list_items()]


@pytest.fixture
def segmenter(settings: Settings, tiny_sam: SamSegmenter) -> Iterator[InteractiveSegmenter]:
    tiny_sam.cache.clear()
    seg = InteractiveSegmenter(settings, build=lambda: tiny_sam, load_for_prefetch=True)
    yield seg
    seg.close()


@pytest.fixture
def client(
    settings: Settings, store: Store, segmenter: InteractiveSegmenter, auth: dict[str, str]
) -> Iterator[TestClient]:
    """Every client of this module sends the bearer token with each request."""
    with TestClient(create_app(settings, store, segmenter), headers=auth) as test_client:
        yield test_client


@pytest.fixture
def item_ids(tmp_path: Path, store: Store) -> list[str]:
    folder = tmp_path / "photos"
    folder.mkdir()
    return _photos(folder, store, 5)


def _segment(client: TestClient, **body: object) -> dict:
    """POST /interactive/segment (the client sends the token); the answer's body."""
    response = client.post("/interactive/segment", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _logits(segmenter: InteractiveSegmenter, out: dict) -> torch.Tensor:
    """The low-res logits the server kept for the response's first mask."""
    stored = segmenter.masks.get(out["masks"][0]["mask_id"], out["model_version"])
    assert stored is not None
    return stored.low_res_logits


# -- refinement ---------------------------------------------------------------------


def test_previous_mask_id_feeds_the_last_logits_back(
    client: TestClient, segmenter: InteractiveSegmenter, item_ids: list[str]
) -> None:
    item = item_ids[0]
    first = _segment(client, item_id=item, box_xyxy=BOX)
    first_id = first["masks"][0]["mask_id"]
    plain = _segment(client, item_id=item, box_xyxy=BOX)  # same prompt, no mask input
    refined = _segment(client, item_id=item, box_xyxy=BOX, previous_mask_id=first_id)
    assert refined["encode_ms"] is None
    first_l, plain_l, refined_l = (_logits(segmenter, out) for out in (first, plain, refined))
    assert torch.equal(first_l, plain_l)  # deterministic without a mask input
    assert not torch.allclose(first_l, refined_l)  # the mask input changed the result
    multi = _segment(client, item_id=item, box_xyxy=BOX, multimask=True, previous_mask_id=first_id)
    assert len({m["mask_id"] for m in multi["masks"]} | {first_id}) == 4


def test_unknown_or_foreign_mask_ids_are_refused(client: TestClient, item_ids: list[str]) -> None:
    unknown = client.post(
        "/interactive/segment",
        json={"item_id": item_ids[0], "box_xyxy": BOX, "previous_mask_id": "deadbeef"},
    )
    assert unknown.status_code == 404
    assert "unknown or expired" in unknown.json()["detail"]
    mask_id = _segment(client, item_id=item_ids[0], box_xyxy=BOX)["masks"][0]["mask_id"]
    other = client.post(
        "/interactive/segment",
        json={"item_id": item_ids[1], "box_xyxy": BOX, "previous_mask_id": mask_id},
    )
    assert other.status_code == 422 and "belongs to item" in other.json()["detail"]


def test_the_mask_memory_is_bounded(
    settings: Settings,
    store: Store,
    tiny_sam: SamSegmenter,
    item_ids: list[str],
    auth: dict[str, str],
) -> None:
    seg = InteractiveSegmenter(settings, build=lambda: tiny_sam, mask_memory_entries=2)
    with TestClient(create_app(settings, store, seg), headers=auth) as small:
        ids = [
            _segment(small, item_id=item_ids[0], box_xyxy=BOX)["masks"][0]["mask_id"]
            for _ in range(3)
        ]
        oldest = small.post(
            "/interactive/segment",
            json={"item_id": item_ids[0], "box_xyxy": BOX, "previous_mask_id": ids[0]},
        )
        assert oldest.status_code == 404
        _segment(small, item_id=item_ids[0], box_xyxy=BOX, previous_mask_id=ids[2])
        stats = small.get("/interactive/stats").json()["masks"]
    assert stats["entries"] == 2 and stats["evictions"] >= 2


def test_mask_input_rle_refines_and_must_match_the_image(
    client: TestClient, segmenter: InteractiveSegmenter, item_ids: list[str]
) -> None:
    item = item_ids[0]
    drawn = np.zeros((120, 160), dtype=bool)
    drawn[30:100, 20:90] = True
    rle = {"size": [120, 160], "counts": encode_rle(drawn)}
    plain = _segment(client, item_id=item, box_xyxy=BOX)
    refined = _segment(client, item_id=item, box_xyxy=BOX, mask_input_rle=rle)
    assert not torch.allclose(_logits(segmenter, plain), _logits(segmenter, refined))

    def post(body: dict) -> tuple[int, str]:
        response = client.post(
            "/interactive/segment", json={"item_id": item, "box_xyxy": BOX, **body}
        )
        return response.status_code, response.json()["detail"]

    wrong = {"size": [160, 120], "counts": encode_rle(drawn.T.copy())}
    status, detail = post({"mask_input_rle": wrong})
    assert status == 422 and "[120, 160]" in detail and "size" in detail
    status, detail = post({"mask_input_rle": {"size": [120, 160], "counts": "5"}})
    assert status == 422 and "cover 5 pixels" in detail
    status, detail = post({"mask_input_rle": rle, "previous_mask_id": "abc"})
    assert status == 422 and "not both" in detail


def test_rle_parsing_matches_pycocotools_and_rejects_garbage() -> None:
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 300), (120, 160)]:
        for mask in (rng.random(shape) > 0.5, np.zeros(shape, bool), np.ones(shape, bool)):
            assert np.array_equal(decode_rle_mask(encode_rle(mask), shape), mask)
    with pytest.raises(ValueError, match="invalid character"):
        parse_rle_counts("0zz9", (10, 12))
    with pytest.raises(ValueError, match="cover"):
        parse_rle_counts(encode_rle(np.ones((10, 12), bool)), (10, 13))


@pytest.mark.parametrize(
    ("size_hw", "img_size", "low"), [((90, 120), 64, 64), ((300, 200), 1024, 256)]
)
def test_binary_mask_logits_invert_sams_postprocessing(
    size_hw: tuple[int, int], img_size: int, low: int
) -> None:
    height, width = size_hw
    mask = np.zeros(size_hw, dtype=bool)
    mask[height // 4 : height * 3 // 4, width // 5 : width // 2] = True
    scale = img_size / max(size_hw)
    input_hw = (int(height * scale + 0.5), int(width * scale + 0.5))
    logits = mask_to_low_res_logits(mask, input_hw, img_size, low)
    assert logits.shape == (low, low) and logits.dtype == np.float32
    assert logits.max() == MASK_LOGIT and logits.min() == -MASK_LOGIT
    assert (logits[input_hw[0] * low // img_size + 1 :] == -MASK_LOGIT).all()  # padding
    # SAM's own postprocessing of these logits gives the mask back
    back = upscale_logits(torch.from_numpy(logits)[None, None], img_size, low, input_hw, size_hw)
    assert mask_iou(back[0, 0].numpy() > 0, mask) > 0.95


# -- prefetch -----------------------------------------------------------------------


def _keys(store: Store, ids: list[str], version: str) -> list[tuple[str, str]]:
    return [(item_image_key(i, store.content_sha256(i)), version) for i in ids]


def test_queue_next_prefetches_the_leased_and_next_items(
    client: TestClient,
    segmenter: InteractiveSegmenter,
    store: Store,
    item_ids: list[str],
    tiny_sam: SamSegmenter,
) -> None:
    ranked = sorted(item_ids)
    rescore(store, ranked, [0.9, 0.8, 0.7, 0.6, 0.5])  # settings.prefetch_items == 3
    calls = tiny_sam.encoder_calls
    lease = client.post("/queue/next", headers={"X-Annotator": "ann"})
    assert lease.status_code == 200 and lease.json()["item_id"] == ranked[0]
    keys = _keys(store, ranked, tiny_sam.version)
    deadline = time.monotonic() + 20
    while not all(k in tiny_sam.cache for k in keys[:4]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(k in tiny_sam.cache for k in keys[:4])
    assert segmenter.wait_prefetch(20)
    assert keys[4] not in tiny_sam.cache  # only the leased item and the next three
    assert tiny_sam.encoder_calls == calls + 4
    out = _segment(client, item_id=ranked[2], box_xyxy=BOX)
    assert out["encode_ms"] is None and tiny_sam.encoder_calls == calls + 4
    again = client.post("/queue/next", headers={"X-Annotator": "ann"})  # same lease
    assert again.json()["item_id"] == ranked[0]
    assert segmenter.wait_prefetch(20)
    prefetch = client.get("/interactive/stats").json()["prefetch"]
    assert prefetch["requests"] == 2 and prefetch["encoded"] == 4 and prefetch["cached"] == 4
    assert prefetch["errors"] == 0 and tiny_sam.encoder_calls == calls + 4


def test_no_prefetch_until_the_segmenter_is_loaded(
    settings: Settings,
    store: Store,
    tiny_sam: SamSegmenter,
    item_ids: list[str],
    auth: dict[str, str],
) -> None:
    rescore(store, item_ids, [0.5] * len(item_ids))
    seg = InteractiveSegmenter(settings, build=lambda: tiny_sam)
    with TestClient(create_app(settings, store, seg), headers=auth) as lazy:
        assert lazy.post("/queue/next").status_code == 200
        stats = lazy.get("/interactive/stats").json()
    assert stats["loaded"] is False
    assert stats["prefetch"]["not_loaded"] == 1 and stats["prefetch"]["requests"] == 0


def test_prefetch_errors_are_counted_and_a_full_queue_drops(tmp_path: Path, store: Store) -> None:
    started, gate = threading.Event(), threading.Event()

    def plan(_store: Store, item_id: str) -> list[str]:
        started.set()
        gate.wait(10)
        return [item_id, "broken"]

    def ensure(_store: Store, item_id: str) -> Outcome:
        if item_id == "broken":
            raise ValueError("cannot decode")
        return "encoded"

    prefetcher = Prefetcher(plan, ensure, max_pending=1)
    assert prefetcher.request(store, "a")
    assert started.wait(5)  # the worker took "a" and waits at the gate
    assert prefetcher.request(store, "b")  # fills the queue
    assert not prefetcher.request(store, "c")  # dropped
    gate.set()
    deadline = time.monotonic() + 5
    while not prefetcher.idle() and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = prefetcher.stats()
    prefetcher.close()
    assert stats["dropped"] == 1 and stats["encoded"] == 2 and stats["errors"] == 2
    assert stats["outstanding"] == 0
