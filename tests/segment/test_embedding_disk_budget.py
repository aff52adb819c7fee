"""The embedding directory's byte bound: LRU by mtime, shared by several processes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from tiny_models import tiny_sam_spec

from engine.config import DEFAULT_EMBEDDING_DIR_MAX_BYTES, ModelSpec, Settings
from engine.ingest import ingest
from engine.models.sam.disk_tier import DiskTier
from engine.models.sam.embedding_cache import Embedding, EmbeddingCache
from engine.prelabel.embed_job import _check_budget
from engine.segment.embeddings import build_segmenter, warn_if_over_budget
from engine.segment.service import InteractiveSegmenter
from engine.serving.app import create_app
from engine.store import Store

VERSION = "v1-test"
TINY_SPEC = ModelSpec.model_validate(tiny_sam_spec("sam-tiny"))


def _embedding(name: str, value: float = 1.0) -> Embedding:
    features = torch.full((1, 4, 8, 8), value, dtype=torch.float32)  # 1 KiB
    return Embedding(features, (30, 40), (24, 32), name, VERSION)


def _file_bytes(tmp_path: Path) -> int:
    """The size of one stored ``_embedding`` file."""
    probe = EmbeddingCache(disk_dir=tmp_path / "probe")
    probe.put(_embedding("probe"))
    return (tmp_path / "probe" / VERSION / "probe.npz").stat().st_size


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _age(root: Path, names: list[str], seconds_ago: float = 1000.0) -> None:
    """Give the files of ``names`` old mtimes, oldest first, one second apart."""
    now = time.time()
    for i, name in enumerate(names):
        stamp = now - seconds_ago + i
        os.utime(root / VERSION / f"{name}.npz", (stamp, stamp))


def test_directory_never_exceeds_the_budget(tmp_path: Path) -> None:
    size = _file_bytes(tmp_path)
    root = tmp_path / "dir"
    cache = EmbeddingCache(0, disk_dir=root, disk_max_bytes=10 * size)
    for i in range(60):
        cache.put(_embedding(f"e{i}"))
        assert _dir_bytes(root) <= 10 * size, f"over the budget after write {i}"
    stats = cache.stats()
    files = sorted(p.stem for p in (root / VERSION).iterdir())
    assert stats["disk_files"] == len(files) and stats["disk_bytes"] == _dir_bytes(root)
    assert 9 <= len(files) <= 10 and "e59" in files and "e0" not in files
    assert stats["disk_evictions"] == 60 - len(files)
    # Evicting to 90 % of the bound means a rescan per ~10 % of it, not one per write.
    assert stats["disk_scans"] < 30


def test_a_recently_read_file_survives_while_older_unread_ones_go(tmp_path: Path) -> None:
    size = _file_bytes(tmp_path)
    root = tmp_path / "dir"
    writer = EmbeddingCache(0, disk_dir=root, disk_max_bytes=10 * size)
    names = [f"old{i}" for i in range(8)]
    for name in names:
        writer.put(_embedding(name))
    _age(root, names)
    reader = EmbeddingCache(disk_dir=root)  # another server: a disk hit touches the file
    assert reader.get(("old0", VERSION)) is not None
    hot = EmbeddingCache(disk=DiskTier(root, touch_interval_s=0.0))
    hot.put(_embedding("old1"))
    _age(root, ["old1"])
    assert hot.get(("old1", VERSION)) is not None  # a memory hit touches it too
    for i in range(4):
        writer.put(_embedding(f"new{i}"))
    left = {p.stem for p in (root / VERSION).iterdir()}
    assert {"old0", "old1", "new0", "new1", "new2", "new3"} <= left
    assert "old2" not in left and "old3" not in left


def test_two_caches_sharing_a_dir_stay_within_the_rescan_tolerance(tmp_path: Path) -> None:
    size = _file_bytes(tmp_path)
    root, budget, every = tmp_path / "dir", 20 * size, 4
    caches = [
        EmbeddingCache(0, disk=DiskTier(root, budget, rescan_writes=every, rescan_interval_s=3600))
        for _ in range(2)
    ]
    worst = 0
    for i in range(60):
        for name, cache in zip("ab", caches, strict=True):
            cache.put(_embedding(f"{name}{i}"))
            worst = max(worst, _dir_bytes(root))
    # Each cache sees the other's writes at its next rescan: at most `every` files late.
    assert budget < worst <= budget + every * size
    caches[0].disk.refresh()  # type: ignore[union-attr]
    assert _dir_bytes(root) <= budget
    evicted = sum(c.stats()["disk_evictions"] for c in caches)
    assert evicted == 120 - len(list((root / VERSION).iterdir()))


def test_a_writer_in_another_process_shares_the_budget(tmp_path: Path) -> None:
    size = _file_bytes(tmp_path)
    root, budget = tmp_path / "dir", 15 * size
    script = (
        "import numpy as np\n"
        "from engine.models.sam.disk_tier import DiskTier\n"
        f"tier = DiskTier({str(root)!r}, {budget}, rescan_writes=4)\n"
        "arrays = {'features': np.ones((1, 4, 8, 8), np.float32),\n"
        "          'original_size_hw': np.array([30, 40]), 'input_size_hw': np.array([24, 32])}\n"
        "for i in range(40):\n"
        "    tier.write(f'p{i}', 'v1-test', arrays)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parent.parent)
    cache = EmbeddingCache(0, disk=DiskTier(root, budget, rescan_writes=4))
    for i in range(40):
        cache.put(_embedding(f"m{i}"))
    assert child.wait(timeout=60) == 0
    assert _dir_bytes(root) <= budget + 2 * 4 * size  # each writer up to 4 writes unseen
    cache.put(_embedding("last"))
    cache.disk.refresh()  # type: ignore[union-attr]
    left = {p.stem for p in (root / VERSION).iterdir()}
    assert _dir_bytes(root) <= budget and "last" in left and len(left) >= 13
    theirs = sorted(name for name in left if name.startswith("p"))
    assert theirs and cache.get((theirs[0], VERSION)) is not None  # written by the child


def test_a_file_deleted_under_a_reader_is_a_miss(tmp_path: Path) -> None:
    EmbeddingCache(disk_dir=tmp_path).put(_embedding("a"))
    reader = EmbeddingCache(disk_dir=tmp_path)
    (tmp_path / VERSION / "a.npz").unlink()  # another process evicted it
    assert reader.get(("a", VERSION)) is None and reader.stats()["misses"] == 1
    valid = EmbeddingCache(disk_dir=tmp_path / "v")
    valid.put(_embedding("b"))
    whole = (tmp_path / "v" / VERSION / "b.npz").read_bytes()
    (tmp_path / VERSION / "b.npz").write_bytes(whole[: len(whole) // 2])  # truncated zip
    assert reader.get(("b", VERSION)) is None
    got = reader.get_or_compute(("b", VERSION), lambda: _embedding("b", 3.0))
    assert got.features[0, 0, 0, 0].item() == 3.0


def test_readers_racing_evictions_never_raise_or_see_partial_files(tmp_path: Path) -> None:
    size = _file_bytes(tmp_path)
    root = tmp_path / "dir"
    writer = DiskTier(root, 4 * size)
    arrays = {"features": np.ones((1, 4, 8, 8), np.float32)}
    errors: list[str] = []
    stop = threading.Event()

    def read() -> None:
        reader = DiskTier(root)
        while not stop.is_set():
            for i in range(20):
                try:
                    got = reader.read(f"k{i}", VERSION)
                except Exception as exc:  # the point of the test
                    errors.append(repr(exc))
                    return
                if got is not None and not np.array_equal(got["features"], arrays["features"]):
                    errors.append(f"k{i}: partial or foreign content")

    thread = threading.Thread(target=read)
    thread.start()
    for _ in range(10):
        for i in range(20):
            writer.write(f"k{i}", VERSION, arrays)
    stop.set()
    thread.join()
    assert errors == [] and writer.stats()["disk_evictions"] > 100


def test_no_budget_means_unbounded(tmp_path: Path) -> None:
    cache = EmbeddingCache(0, disk_dir=tmp_path, disk_max_bytes=None)
    for i in range(30):
        cache.put(_embedding(f"e{i}"))
    stats = cache.stats()
    assert len(list((tmp_path / VERSION).iterdir())) == 30
    assert stats["disk_files"] == 30 and stats["disk_evictions"] == 0
    assert stats["disk_bytes"] == _dir_bytes(tmp_path)
    assert EmbeddingCache().stats()["disk_files"] == 0  # no disk tier: zeros


def test_stale_temporary_files_are_removed_and_bad_settings_refused(tmp_path: Path) -> None:
    (tmp_path / VERSION).mkdir()
    stale, fresh = tmp_path / VERSION / ".x.1.a.tmp", tmp_path / VERSION / ".y.1.b.tmp"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"x" * 100)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    tier = DiskTier(tmp_path, 10_000)
    tier.refresh()
    assert not stale.exists() and fresh.exists() and tier.stats()["disk_bytes"] == 100
    with pytest.raises(ValueError, match="max_bytes"):
        DiskTier(tmp_path, 0)
    with pytest.raises(ValueError, match="not both"):
        EmbeddingCache(disk=tier, disk_dir=tmp_path)
    assert EmbeddingCache(disk=tier).resized(0).disk is tier


def test_build_segmenter_bounds_the_dir_and_stats_show_it(
    tmp_path: Path, settings: Settings, store: Store, auth: dict[str, str]
) -> None:
    assert build_segmenter(TINY_SPEC, tmp_path, tmp_path / "d").cache.disk_max_bytes == (
        DEFAULT_EMBEDDING_DIR_MAX_BYTES
    )
    model = build_segmenter(TINY_SPEC, tmp_path, tmp_path / "emb", disk_max_bytes=10**9)
    assert model.cache.disk_max_bytes == 10**9
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    ingest(store, str(tmp_path / "a.png"), [tmp_path])
    item_id = store.list_items()[0].item_id
    app = create_app(settings, store, InteractiveSegmenter(settings, build=lambda: model))
    with TestClient(app) as client:
        body = {"item_id": item_id, "box_xyxy": [10, 10, 50, 40]}
        assert client.post("/interactive/segment", json=body, headers=auth).status_code == 200
        stats = client.get("/interactive/stats", headers=auth).json()
    files = list((tmp_path / "emb").rglob("*.npz"))
    assert stats["disk_files"] == len(files) == 1 and stats["disk_evictions"] == 0
    assert stats["disk_bytes"] == files[0].stat().st_size


def test_a_job_larger_than_the_budget_warns_once(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.segment.embeddings"):
        assert warn_if_over_budget(10 * 4096, 4096, 11, tmp_path)
        assert not warn_if_over_budget(10 * 4096, 4096, 10, tmp_path)
        assert not warn_if_over_budget(None, 4096, 10**6, tmp_path)
    assert len(caplog.records) == 1
    assert "holds 10 embeddings" in caplog.text and "encodes 11" in caplog.text
    # The job measures one embedding from a file its first batch wrote.
    from engine.models.versioning import spec_version

    tier = DiskTier(tmp_path)
    size = tier.write("k0", spec_version(TINY_SPEC), {"features": np.zeros(1000, np.float32)})
    small = settings.model_copy(update={"embedding_dir_max_bytes": 3 * size})
    todo = [{"item_id": f"i{n}", "uri": "", "key": f"k{n}"} for n in range(5)]
    batch = {"item_id": np.array(["i0"], dtype=object), "error": np.array([""], dtype=object)}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="engine.segment.embeddings"):
        assert _check_budget(small, todo, batch, tmp_path, TINY_SPEC)
    assert "holds 3 embeddings" in caplog.text and "encodes 5" in caplog.text
    missing = {"item_id": np.array(["i1"], dtype=object), "error": np.array([""], dtype=object)}
    assert not _check_budget(small, todo, missing, tmp_path, TINY_SPEC)  # nothing to measure


def test_server_segmenter_takes_the_budget_from_settings(tmp_path: Path) -> None:
    from engine.config import load_settings

    models = tmp_path / "config" / "models"
    models.mkdir(parents=True)
    (models / "sam-tiny.yaml").write_text(
        "name: sam-tiny\nfamily: sam\nparams: {variant: litemedsam, tiny: true}\n"
    )
    settings = load_settings(
        data_dir=tmp_path / "data",
        config_dir=tmp_path / "config",
        interactive_model="sam-tiny",
        embedding_dir_max_bytes=12_345_678,
    )
    model = InteractiveSegmenter(settings).model
    assert model.cache.disk_max_bytes == 12_345_678
    assert model.cache.disk_dir == (tmp_path / "data" / "embeddings").resolve()
