"""EmbeddingCache: byte-bounded LRU, single-flight compute, fp16 storage, disk tier."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tiny_models
import torch

from engine.models.sam.embedding_cache import Embedding, EmbeddingCache, content_hash, image_key

VERSION = "v1-test"


def _embedding(name: str, value: float = 1.0, channels: int = 4) -> Embedding:
    features = torch.full((1, channels, 8, 8), value, dtype=torch.float32)  # 256 B per channel
    return Embedding(features, (30, 40), (24, 32), name, VERSION)


def test_lru_is_bounded_by_bytes() -> None:
    cache = EmbeddingCache(max_bytes=3 * 1024)  # three 1 KiB entries
    for name in "abc":
        cache.put(_embedding(name))
    assert cache.get(("a", VERSION)) is not None  # a is now most recent
    cache.put(_embedding("d"))
    stats = cache.stats()
    assert stats["bytes"] <= 3 * 1024 and stats["entries"] == 3 and stats["evictions"] == 1
    assert ("b", VERSION) not in cache and ("a", VERSION) in cache
    cache.put(_embedding("big", channels=16))  # 4 KiB > bound: not kept in memory
    assert ("big", VERSION) not in cache and cache.stats()["bytes"] == 3 * 1024


def test_concurrent_get_or_compute_computes_once() -> None:
    cache = EmbeddingCache()
    calls = []
    start = threading.Barrier(8)

    def compute() -> Embedding:
        calls.append(1)
        time.sleep(0.2)
        return _embedding("img")

    results: list[Embedding] = []

    def worker() -> None:
        start.wait()
        results.append(cache.get_or_compute(("img", VERSION), compute))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 8
    assert all(r is results[0] for r in results)
    stats = cache.stats()
    assert stats["computes"] == 1 and stats["waits"] + stats["hits"] == 7


def test_failed_compute_reaches_waiters_and_is_retried() -> None:
    cache = EmbeddingCache()

    def broken() -> Embedding:
        raise RuntimeError("encoder exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        cache.get_or_compute(("img", VERSION), broken)
    assert cache.get_or_compute(("img", VERSION), lambda: _embedding("img")).image_key == "img"
    with pytest.raises(ValueError, match="not"):
        cache.get_or_compute(("other", VERSION), lambda: _embedding("img"))


def test_fp16_storage_halves_bytes() -> None:
    cache = EmbeddingCache(store_dtype="fp16")
    stored = cache.put(_embedding("a", value=0.1))
    assert stored.features.dtype == torch.float16 and cache.stats()["bytes"] == 512
    assert torch.allclose(stored.features.float(), torch.full((1, 4, 8, 8), 0.1), atol=1e-3)
    with pytest.raises(ValueError, match="store_dtype"):
        EmbeddingCache(store_dtype="int8")


def test_disk_tier_survives_a_new_cache_instance(tmp_path: Path) -> None:
    first = EmbeddingCache(disk_dir=tmp_path)
    first.put(_embedding("a", value=0.25))
    files = list(tmp_path.rglob("*"))
    assert [p.name for p in files if p.is_file()] == ["a.npz"]  # no temporary files left
    second = EmbeddingCache(disk_dir=tmp_path)
    loaded = second.get(("a", VERSION))
    assert loaded is not None and torch.equal(loaded.features, _embedding("a", 0.25).features)
    assert loaded.original_size_hw == (30, 40) and loaded.input_size_hw == (24, 32)
    assert second.stats()["disk_hits"] == 1 and ("a", VERSION) in second
    assert second.get(("missing", VERSION)) is None and second.stats()["misses"] == 1


def test_corrupt_disk_file_is_recomputed(tmp_path: Path) -> None:
    path = tmp_path / VERSION / "a.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    cache = EmbeddingCache(disk_dir=tmp_path)
    got = cache.get_or_compute(("a", VERSION), lambda: _embedding("a", 2.0))
    assert cache.stats()["computes"] == 1 and got.features[0, 0, 0, 0].item() == 2.0
    assert EmbeddingCache(disk_dir=tmp_path).get(("a", VERSION)) is not None


def test_keys_are_validated_and_hashes_are_content_addressed() -> None:
    cache = EmbeddingCache()
    with pytest.raises(ValueError, match="cache key part"):
        cache.get(("../etc/passwd", VERSION))
    with pytest.raises(ValueError, match="max_bytes"):
        EmbeddingCache(max_bytes=-1)
    assert image_key("item-7.png") == "item-7.png"
    hashed = image_key("s3://bucket/a b.png")
    assert hashed.startswith("id-") and hashed == image_key("s3://bucket/a b.png")
    a = np.zeros((4, 6, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 1
    assert content_hash(a) == content_hash(a.copy()) != content_hash(b)
    assert content_hash(a) != content_hash(a.reshape(6, 4, 3))


def test_two_clients_on_two_images_never_mix(tmp_path: Path) -> None:
    seg = tiny_models.tiny_sam("litemedsam")
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 255, (50, 70, 3), dtype=np.uint8) for _ in range(2)]
    reference = [tiny_models.tiny_sam("litemedsam").embed(None, im) for im in images]
    box = [5, 5, 60, 40]
    expected = [seg.segment(ref, box_xyxy=box)[0].mask for ref in reference]
    errors: list[str] = []

    def client(index: int) -> None:
        for _ in range(5):
            emb = seg.embed(None, images[index])
            if not torch.equal(emb.features, reference[index].features):
                errors.append(f"client {index} got a foreign embedding")
            if not np.array_equal(seg.segment(emb, box_xyxy=box)[0].mask, expected[index]):
                errors.append(f"client {index} got a foreign mask")

    threads = [threading.Thread(target=client, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and seg.images_encoded == 2
