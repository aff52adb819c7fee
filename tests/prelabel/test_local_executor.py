"""The in-process executor (``engine.prelabel.local``) and where a job's stages run
(``job.pick_executor``): a real store, real photo files, a tiny random YOLO11n spec.

None of these tests uses the session's Ray node but the last one (slow), which runs a
legacy job (stored before executors existed) on it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import func, select
from tiny_models import tiny_yolo_spec, write_model_spec

from engine.config import Settings, load_settings
from engine.ingest import ingest
from engine.prelabel import local, runtime
from engine.prelabel.codec import decode_prediction, objects
from engine.prelabel.config import PrelabelConfig
from engine.prelabel.job import (
    JOB_KIND,
    create_prelabel_job,
    job_inputs,
    pick_executor,
    plan_items,
    run_prelabel_job,
)
from engine.prelabel.stages import Predictor, decode_stage, predictor_kwargs
from engine.store import JobRecord, Store
from engine.store import schema as t
from engine.types import Box

if TYPE_CHECKING:
    from conftest import RayCluster

# conf_floor 0: every image gets max_det boxes, so suggestion counts are not all zero
SPEC = tiny_yolo_spec("tiny", imgsz_px=64, max_det=3, conf_floor=0.0, batch_size=2)
N_GOOD = 5


@pytest.fixture
def tiny_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("RAY_ADDRESS", runtime.LOCAL_HEAD_ENV):  # no cluster configured
        monkeypatch.delenv(name, raising=False)
    write_model_spec(tmp_path / "configs", SPEC)
    (tmp_path / "models").mkdir()
    return load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path],
        config_dir=tmp_path / "configs",
        models_dir=tmp_path / "models",
        ray_num_cpus=2,
        api_token="t",
    )


@pytest.fixture
def photos(tmp_path: Path, tiny_settings: Settings) -> Iterator[tuple[Store, set[str], set[str]]]:
    """A store with N_GOOD good photos and two broken ones: (store, good ids, broken ids)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(11)
    for i in range(N_GOOD):
        shape = (int(rng.integers(40, 120)), int(rng.integers(40, 120)), 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"p{i}.jpg")
    data = (folder / "p0.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "notes.jpg").write_text("not a JPEG at all\n", encoding="utf-8")
    store = Store(tiny_settings.resolved_database_url)
    report = ingest(store, str(folder), tiny_settings.resolved_data_roots)
    assert not report.errors
    by_name = {Path(str(i.uri)).name: i.item_id for i in store.list_items()}
    broken = {by_name.pop("truncated.jpg"), by_name.pop("notes.jpg")}
    try:
        yield store, set(by_name.values()), broken
    finally:
        store.close()


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Fail any attempt to start or join Ray; count the in-process executor's runs."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the job tried to start or join Ray")

    for name in ("ray_session", "start_local_ray", "connect_ray", "join_local_head"):
        monkeypatch.setattr(runtime, name, refuse)
    calls = {"local": 0}
    real = local.run_in_process

    def counted(*args: Any, **kwargs: Any) -> None:
        calls["local"] += 1
        real(*args, **kwargs)

    monkeypatch.setattr(local, "run_in_process", counted)
    return calls


def _counts(job: JobRecord) -> tuple[str, int, int, int, int | None]:
    return job.state, job.done, job.failed, job.skipped, job.total


def _predictions_per_item(store: Store, version: str) -> dict[str, int]:
    p = t.predictions.c
    query = select(p.item_id, func.count()).where(p.model_version == version).group_by(p.item_id)
    with store.engine.connect() as conn:
        return {row[0]: int(row[1]) for row in conn.execute(query)}


def test_a_small_job_runs_in_process_records_errors_and_resumes(
    photos: tuple[Store, set[str], set[str]], tiny_settings: Settings, no_ray: dict[str, int]
) -> None:
    store, good, broken = photos
    ray_was_imported = "ray" in sys.modules
    job = create_prelabel_job(store, tiny_settings, model_name="tiny")
    assert job_inputs(job).config.executor == "auto"
    final = run_prelabel_job(store, tiny_settings, job.job_id)
    assert _counts(final) == ("succeeded", N_GOOD, 2, 0, N_GOOD + 2), final.message
    assert no_ray["local"] == 1
    assert not runtime.ray_running()
    if not ray_was_imported:  # the local executor does not even import Ray
        assert "ray" not in sys.modules
    version = str(final.model_version)
    assert _predictions_per_item(store, version) == dict.fromkeys(good, 1)
    errors = {e.item_id: e.message for e in store.job_errors(job.job_id)}
    assert set(errors) == broken and all(errors.values())
    assert any("ImageDecodeError" in message for message in errors.values())
    for item_id in good:
        assert len(store.suggestions_for(item_id, model_version=version, min_score=0.0)) == 3
        assert store.lease_of(item_id).score is not None  # in the queue now

    rerun = run_prelabel_job(store, tiny_settings, job.job_id)
    # the good items are skipped; the broken ones are tried again (and fail again)
    assert _counts(rerun) == ("succeeded", 0, 2, N_GOOD, N_GOOD + 2)
    assert _predictions_per_item(store, version) == dict.fromkeys(good, 1)
    assert {e.item_id for e in store.job_errors(job.job_id)} == broken  # recorded once
    other = create_prelabel_job(store, tiny_settings, model_name="tiny")
    assert _counts(run_prelabel_job(store, tiny_settings, other.job_id))[3] == N_GOOD
    assert no_ray["local"] == 3 and not runtime.ray_running()


def test_the_job_stores_what_the_stages_produce_called_directly(
    photos: tuple[Store, set[str], set[str]], tiny_settings: Settings, no_ray: dict[str, int]
) -> None:
    store, good, broken = photos
    job = create_prelabel_job(store, tiny_settings, model_name="tiny")
    inputs = job_inputs(job)
    todo, _ = plan_items(store, "direct", str(job.model_version), None)
    assert len(todo) == N_GOOD + 2
    torch.manual_seed(0)  # the tiny network's random weights: the same in both runs
    final = run_prelabel_job(store, tiny_settings, job.job_id)
    assert final.state == "succeeded", final.message

    torch.manual_seed(0)
    kwargs = predictor_kwargs(tiny_settings, inputs.config, inputs.models, torch_threads=None)
    predictor = Predictor(**kwargs)
    decode = decode_stage("image", tiny_settings, inputs.config)
    batch = {name: objects([row[name] for row in todo]) for name in todo[0]}
    out = predictor(decode(batch))
    direct = {
        str(item_id): (str(error), float(score))
        for item_id, error, score in zip(out["item_id"], out["error"], out["score"], strict=True)
    }
    assert {i for i, (error, _) in direct.items() if error} == broken
    version = str(final.model_version)
    stored = dict(store.iter_predicted(version))
    assert set(stored) == good
    for item_id in good:
        assert stored[item_id] == pytest.approx(direct[item_id][1], rel=1e-4, abs=1e-7)
    errors = {e.item_id: e.message for e in store.job_errors(job.job_id)}
    assert errors == {i: direct[i][0] for i in broken}
    boxes = set()
    for k, item_id in enumerate(out["item_id"]):
        if item_id not in good:
            continue
        expected = decode_prediction(out["meta"][k], out["probs"][k], out["extras"][k])
        records = store.suggestions_for(item_id, model_version=version, min_score=0.0)
        assert len(records) == len(expected.suggestions) == 3
        for record, want in zip(records, expected.suggestions, strict=True):
            got = record.suggestion
            assert isinstance(got.region, Box) and isinstance(want.region, Box)
            assert got.label == want.label
            assert got.score == pytest.approx(want.score, rel=1e-4, abs=1e-7)
            np.testing.assert_allclose(got.region.box_xyxy, want.region.box_xyxy, atol=1e-3)
            boxes.add(tuple(round(v, 1) for v in got.region.box_xyxy))
    # A random YOLO11n's scores barely depend on its input, but its boxes follow each
    # image's size: every good item got its own image's answer, not a neighbour's.
    assert len(boxes) == N_GOOD


@contextmanager
def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> Iterator[None]:
    with monkeypatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        yield


@pytest.mark.parametrize(
    ("config", "n_items", "expected"),
    [
        (PrelabelConfig(), 1, "local"),
        (PrelabelConfig(), 512, "local"),  # the default local_max_items
        (PrelabelConfig(), 513, "ray"),
        (PrelabelConfig(local_max_items=3), 3, "local"),
        (PrelabelConfig(local_max_items=3), 4, "ray"),
        (PrelabelConfig(local_max_items=0), 1, "ray"),
        (PrelabelConfig(executor="ray"), 1, "ray"),
        (PrelabelConfig(executor="local"), 10**6, "local"),
    ],
)
def test_pick_executor_by_backlog_size_and_config(
    tiny_settings: Settings, config: PrelabelConfig, n_items: int, expected: str
) -> None:
    assert pick_executor(config, tiny_settings, n_items) == expected


def test_a_configured_cluster_always_gets_the_work(
    tiny_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = tiny_settings.model_copy(update={"ray_address": "10.1.2.3:6379"})
    assert pick_executor(PrelabelConfig(), remote, 1) == "ray"
    assert pick_executor(PrelabelConfig(executor="local"), remote, 1) == "local"  # as told
    with _env(monkeypatch, RAY_ADDRESS="10.1.2.3:6379"):
        assert pick_executor(PrelabelConfig(), tiny_settings, 1) == "ray"
    # the engine's own warm local node is no cluster: small jobs still run in-process
    with _env(
        monkeypatch, RAY_ADDRESS="127.0.0.1:6380", **{runtime.LOCAL_HEAD_ENV: "127.0.0.1:6380"}
    ):
        assert pick_executor(PrelabelConfig(), tiny_settings, 1) == "local"


def _legacy_copy(store: Store, job: JobRecord) -> JobRecord:
    """The same job as recorded before executors existed (no executor keys)."""
    stored = dict(job.config)
    stored["prelabel"] = {
        k: v for k, v in stored["prelabel"].items() if k not in ("executor", "local_max_items")
    }
    return store.create_job(
        JOB_KIND, stored, model_name=job.model_name, model_version=job.model_version
    )


def test_config_keys_and_legacy_jobs_send_the_job_to_ray(
    photos: tuple[Store, set[str], set[str]],
    tiny_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, _, _ = photos
    sessions: list[Settings] = []

    @contextmanager
    def fake_session(settings: Settings) -> Iterator[None]:
        sessions.append(settings)
        raise RuntimeError("stopped at ray_session")
        yield  # pragma: no cover

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("ran in-process")

    monkeypatch.setattr(runtime, "ray_session", fake_session)
    monkeypatch.setattr(local, "run_in_process", refuse)
    jobs_dir = tiny_settings.config_dir / "jobs"
    jobs_dir.mkdir()
    (jobs_dir / "prelabel.yaml").write_text("local_max_items: 3\n", encoding="utf-8")
    capped = create_prelabel_job(store, tiny_settings, model_name="tiny")
    assert job_inputs(capped).config.local_max_items == 3
    failed = run_prelabel_job(store, tiny_settings, capped.job_id)  # 7 items > 3: Ray
    assert failed.state == "failed" and "stopped at ray_session" in str(failed.message)
    assert len(sessions) == 1

    legacy = _legacy_copy(store, capped)
    assert "executor" not in legacy.config["prelabel"]
    config = job_inputs(legacy).config
    assert config.executor == "ray"
    assert pick_executor(config, tiny_settings, 1) == "ray"
    assert run_prelabel_job(store, tiny_settings, legacy.job_id).state == "failed"
    assert len(sessions) == 2


@pytest.mark.slow
def test_a_legacy_job_runs_on_the_sessions_ray_node(
    ray_cluster: RayCluster, photos: tuple[Store, set[str], set[str]], tiny_settings: Settings
) -> None:
    """On Ray for real; tests/conftest.py refuses an in-process run in this test."""
    store, good, broken = photos
    legacy = _legacy_copy(store, create_prelabel_job(store, tiny_settings, model_name="tiny"))
    final = run_prelabel_job(store, tiny_settings, legacy.job_id)
    assert _counts(final) == ("succeeded", N_GOOD, 2, 0, N_GOOD + 2), final.message
    assert _predictions_per_item(store, str(final.model_version)) == dict.fromkeys(good, 1)
    assert {e.item_id for e in store.job_errors(legacy.job_id)} == broken
