"""The embed job: a real embedded Ray cluster (the session's, ``ray_cluster`` in
tests/conftest.py), a real SQLite store, a tiny random SAM.

Embeddings land in the shared directory under the server's keys, so a server
built afterwards answers a click without encoding; a rerun skips what is on
disk; a broken file is a recorded error while the others are encoded. The
encoder actor and the planning are also tested without Ray (fast).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from tiny_models import tiny_sam_spec, tiny_yolo_spec, write_model_spec
from typer.testing import CliRunner

from engine.config import ConfigError, Settings, load_settings
from engine.ingest import ingest
from engine.prelabel.embed_job import EmbedConfig, create_embed_job, plan_items, run_embed_job
from engine.prelabel.embed_pipeline import Encoder, decode_keyed
from engine.review.queue import rescore
from engine.segment.embeddings import embedding_dir, embedding_file, item_image_key
from engine.serving.app import create_app
from engine.store import Store

if TYPE_CHECKING:
    from conftest import RayCluster

N_GOOD = 5
AUTH = {"Authorization": "Bearer t"}  # the api_token of these settings


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("embed")
    write_model_spec(root / "configs", tiny_sam_spec("tinysam"))
    write_model_spec(root / "configs", tiny_yolo_spec("det"))
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(5)
    for i in range(N_GOOD):
        shape = (int(rng.integers(40, 120)), int(rng.integers(40, 120)), 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(photos / f"p{i}.png")
    good = (photos / "p0.png").read_bytes()
    (photos / "truncated.png").write_bytes(good[: len(good) // 3])
    return root


def _settings(base: Path, name: str) -> Settings:
    return load_settings(
        data_dir=base / name,
        data_roots=[base],
        config_dir=base / "configs",
        interactive_model="tinysam",
        ray_num_cpus=2,
        api_token="t",
    )


def _store(base: Path, name: str) -> tuple[Store, Settings]:
    settings = _settings(base, name)
    store = Store(settings.resolved_database_url)
    assert not ingest(store, str(base / "photos"), settings.resolved_data_roots).errors
    return store, settings


def _ids(store: Store, broken: bool) -> list[str]:
    return [
        item.item_id
        for item in store.iter_items()
        if (Path(str(item.uri)).name == "truncated.png") == broken
    ]


def _files(store: Store, settings: Settings, version: str, ids: list[str]) -> list[Path]:
    disk_dir = embedding_dir(settings)
    return [
        embedding_file(disk_dir, item_image_key(i, store.content_sha256(i)), version) for i in ids
    ]


# -- without Ray ----------------------------------------------------------------------


def test_the_encoder_actor_writes_good_rows_and_reports_bad_ones(base: Path) -> None:
    store, settings = _store(base, "actor")
    job = create_embed_job(store, settings)
    config = EmbedConfig.model_validate(job.config["embed"])
    disk_dir = Path(job.config["embedding_dir"])
    assert disk_dir == (base / "actor" / "embeddings").resolve()
    todo, skipped = plan_items(store, config, disk_dir, str(job.model_version))
    assert (len(todo), skipped) == (N_GOOD + 1, 0)
    batch = {k: np.array([row[k] for row in todo], dtype=object) for k in todo[0]}
    decoded = decode_keyed(batch, roots=[str(base)], max_pixels=10**8, max_file_bytes=10**8)
    encoder = Encoder(job.config["model_spec"], str(settings.resolved_models_dir), str(disk_dir))
    out = encoder(decoded)
    errors = dict(zip(out["item_id"], out["error"], strict=True))
    assert {i for i, e in errors.items() if e} == set(_ids(store, broken=True))
    assert all(
        p.is_file() for p in _files(store, settings, str(job.model_version), _ids(store, False))
    )
    assert encoder.model.encoder_calls == N_GOOD and len(encoder.model.cache) == 0  # disk only
    todo, skipped = plan_items(store, config, disk_dir, str(job.model_version))
    assert [row["item_id"] for row in todo] == _ids(store, broken=True) and skipped == N_GOOD
    store.close()


def test_top_and_limit_select_from_the_ranked_queue(base: Path) -> None:
    store, settings = _store(base, "select")
    ids = sorted(_ids(store, broken=False))
    rescore(store, ids[:3], [0.2, 0.9, 0.5])
    disk = Path("/nonexistent")
    top = plan_items(store, EmbedConfig(top=2), disk, "v")[0]
    assert [row["item_id"] for row in top] == [ids[1], ids[2]]
    limited = plan_items(store, EmbedConfig(top=3, limit=1), disk, "v")[0]
    assert [row["item_id"] for row in limited] == [ids[1]]
    first = plan_items(store, EmbedConfig(limit=2), disk, "v")[0]
    assert [row["item_id"] for row in first] == sorted(_ids(store, False) + _ids(store, True))[:2]
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        create_embed_job(store, settings, model_name="nope")
    with pytest.raises(ConfigError, match="needs a segmenter"):
        create_embed_job(store, settings, model_name="det")
    with pytest.raises(ConfigError, match="top"):
        create_embed_job(store, settings, top=0)
    store.close()


# -- on Ray ---------------------------------------------------------------------------


@pytest.mark.slow
def test_embed_job_fills_the_disk_tier_the_server_reads(
    base: Path, ray_cluster: RayCluster
) -> None:
    store, settings = _store(base, "job")
    job = create_embed_job(store, settings, batch_size=2)
    final = run_embed_job(store, settings, job.job_id)
    assert final.state == "succeeded", final.message
    assert (final.total, final.done, final.failed, final.skipped) == (N_GOOD + 1, N_GOOD, 1, 0)
    broken = _ids(store, broken=True)
    errors = store.job_errors(job.job_id)
    assert [e.item_id for e in errors] == broken and "ImageDecodeError" in errors[0].message
    version = str(final.model_version)
    assert all(p.is_file() for p in _files(store, settings, version, _ids(store, False)))
    assert not any(p.is_file() for p in _files(store, settings, version, broken))

    good = _ids(store, broken=False)[0]
    with TestClient(create_app(settings, store)) as client:  # segmenter from settings
        out = client.post(
            "/interactive/segment", json={"item_id": good, "box_xyxy": [5, 5, 30, 30]}, headers=AUTH
        ).json()
        stats = client.get("/interactive/stats", headers=AUTH).json()
    assert out["model_version"] == version and out["encode_ms"] is None
    assert stats["encoder_calls"] == 0 and stats["disk_hits"] == 1
    assert stats["embedding_dir"] == str(embedding_dir(settings))

    again = run_embed_job(store, settings, job.job_id)  # resume: only the broken one is retried
    assert (again.state, again.done, again.failed, again.skipped) == ("succeeded", 0, 1, N_GOOD)
    assert len(store.job_errors(job.job_id)) == 1
    store.close()


@pytest.mark.slow
def test_the_cli_runs_a_limited_embed_job(base: Path, ray_cluster: RayCluster) -> None:
    from engine.cli import app

    store, settings = _store(base, "cli")
    config = base / "cli.yaml"
    config.write_text(
        f"data_dir: {base / 'cli'}\ndata_roots: [{base}]\nconfig_dir: {base / 'configs'}\n"
        "interactive_model: tinysam\nray_num_cpus: 2\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["embed", "--limit", "2", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "2 encoded, 0 failed, 0 skipped" in result.output
    files = list((embedding_dir(settings)).rglob("*.npz"))
    assert len(files) == 2
    store.close()
