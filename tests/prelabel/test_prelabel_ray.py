"""The pre-label job end to end on a real embedded Ray cluster and a real SQLite store.

The jobs run on the session's Ray node (``ray_cluster`` in tests/conftest.py; the
job configs say ``executor: ray``, else a backlog this small would run in-process);
the crash test runs the job in a subprocess (its own Ray node), kills it with
SIGKILL midway and resumes it here. Models are tiny randomly initialised YOLO11n
networks.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from tiny_models import tiny_yolo_spec, write_model_spec

from engine.config import Settings, load_settings
from engine.ingest import ingest
from engine.prelabel.config import PrelabelConfig
from engine.prelabel.job import create_prelabel_job, run_prelabel_job
from engine.prelabel.runtime import RaySession, ray_temp_dir
from engine.store import JobRecord, Store
from engine.store import schema as t

if TYPE_CHECKING:
    from conftest import RayCluster

pytestmark = pytest.mark.slow

N_GOOD = 17
SPECS = [
    tiny_yolo_spec("tiny", imgsz_px=160, max_det=10, batch_size=4),
    # slower on purpose (640 px, batch of 1): the crash test needs time to kill it midway
    tiny_yolo_spec("tiny640", imgsz_px=640, max_det=10, batch_size=1),
]
# declares a weight file that is not in the models cache
GHOST_SPEC = f"""name: ghost
family: yolo
asset:
  filename: ghost.pt
  sha256: "{"0" * 64}"
  size_bytes: 1000
  sources: [{{url: "https://example.invalid/ghost.pt"}}]
"""
JOB_YAML = (
    "executor: ray\nrows_per_block: 4\ndecode_batch_size: 4\nwrite_batch_size: 4\n"
    "torch_threads: 1\n"
)
KILL_JOB_YAML = (
    "executor: ray\nrows_per_block: 2\ndecode_batch_size: 2\nwrite_batch_size: 1\n"
    "torch_threads: 1\n"
)


def _write_photos(folder: Path, count: int, rng: np.random.Generator) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        shape = (int(rng.integers(48, 160)), int(rng.integers(48, 160)), 3)
        path = folder / f"photo{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def _write_broken(folder: Path, good: Path) -> list[Path]:
    truncated, empty, text = folder / "truncated.jpg", folder / "empty.jpg", folder / "notes.jpg"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    empty.write_bytes(b"")
    text.write_text("this is a text file, not a JPEG\n", encoding="utf-8")
    return [truncated, empty, text]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prelabel")
    for spec in SPECS:
        write_model_spec(root / "configs", spec)
    (root / "configs" / "models" / "ghost.yaml").write_text(GHOST_SPEC, encoding="utf-8")
    (root / "configs" / "jobs").mkdir()
    (root / "configs" / "jobs" / "prelabel.yaml").write_text(JOB_YAML, encoding="utf-8")
    (root / "kill_job.yaml").write_text(KILL_JOB_YAML, encoding="utf-8")
    rng = np.random.default_rng(7)
    good = _write_photos(root / "photos", N_GOOD, rng)
    _write_broken(root / "photos", good[0])
    _write_photos(root / "many", 40, rng)
    return root


def _settings(base: Path, name: str) -> Settings:
    return load_settings(
        data_dir=base / name,
        data_roots=[base],
        config_dir=base / "configs",
        ray_num_cpus=2,
        api_token="t",
    )


def _store(base: Path, name: str, folder: str = "photos") -> tuple[Store, Settings]:
    settings = _settings(base, name)
    store = Store(settings.resolved_database_url)
    report = ingest(store, str(base / folder), settings.resolved_data_roots)
    assert not report.errors
    return store, settings


def _predictions_per_item(store: Store, version: str) -> dict[str, int]:
    query = (
        select(t.predictions.c.item_id, func.count())
        .where(t.predictions.c.model_version == version)
        .group_by(t.predictions.c.item_id)
    )
    with store.engine.connect() as conn:
        return {row[0]: int(row[1]) for row in conn.execute(query)}


def _suggestions_per_item(store: Store, version: str) -> dict[str, int]:
    query = (
        select(t.suggestions.c.item_id, func.count())
        .where(t.suggestions.c.model_version == version)
        .group_by(t.suggestions.c.item_id)
    )
    with store.engine.connect() as conn:
        return {row[0]: int(row[1]) for row in conn.execute(query)}


def _broken_ids(store: Store) -> set[str]:
    return {
        item.item_id
        for item in store.iter_items()
        if item.uri and Path(item.uri).name in {"truncated.jpg", "empty.jpg", "notes.jpg"}
    }


def test_job_records_bad_items_and_a_rerun_redoes_nothing(
    base: Path, ray_cluster: RayCluster
) -> None:
    store, settings = _store(base, "first")
    job = create_prelabel_job(store, settings, model_name="tiny")
    assert job.state == "pending"
    seen: list[JobRecord] = []
    final = run_prelabel_job(store, settings, job.job_id, on_progress=seen.append)

    assert final.state == "succeeded", final.message
    assert (final.total, final.done, final.failed, final.skipped) == (N_GOOD + 3, N_GOOD, 3, 0)
    assert [r.state for r in seen][:1] == ["running"] and seen[-1].state == "succeeded"
    assert [r.done for r in seen] == sorted(r.done for r in seen)  # progress only grows
    errors = store.job_errors(job.job_id)
    assert {e.item_id for e in errors} == _broken_ids(store)
    assert all("ImageDecodeError" in e.message for e in errors)
    version = str(final.model_version)
    per_item = _predictions_per_item(store, version)
    assert len(per_item) == N_GOOD and set(per_item.values()) == {1}
    assert not _broken_ids(store) & set(per_item)
    suggestions_before = _suggestions_per_item(store, version)

    again = run_prelabel_job(store, settings, job.job_id)  # same job id
    assert (again.state, again.done, again.failed, again.skipped) == ("succeeded", 0, 3, N_GOOD)
    fresh = create_prelabel_job(store, settings, model_name="tiny")  # a new job, same model
    fresh = run_prelabel_job(store, settings, fresh.job_id)
    assert (fresh.state, fresh.done, fresh.failed, fresh.skipped) == ("succeeded", 0, 3, N_GOOD)
    assert _predictions_per_item(store, version) == per_item
    assert _suggestions_per_item(store, version) == suggestions_before
    assert len(store.job_errors(job.job_id)) == 3  # recorded once per job and item
    store.close()


def test_a_limited_job_stops_at_its_limit_and_resumes_within_it(
    base: Path, ray_cluster: RayCluster
) -> None:
    from rich.console import Console

    from engine.prelabel.progress import run_with_progress

    store, settings = _store(base, "limited")
    out = io.StringIO()
    first = run_with_progress(settings, model="tiny", limit=6, console=Console(file=out))
    assert first.state == "succeeded" and first.done + first.failed == 6
    assert f"job {first.job_id}: succeeded" in out.getvalue()
    assert f"{first.done} new, {first.failed} failed" in out.getvalue()
    again = run_prelabel_job(store, settings, first.job_id)
    # only the items that failed are retried; the limit does not widen
    assert (again.done, again.failed, again.skipped) == (0, first.failed, first.done)
    assert store.count_predictions(first.model_version) == first.done
    store.close()


def test_a_sizing_that_would_hang_fails_fast_with_a_message(
    base: Path, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    store, settings = _store(base, "sizing")
    greedy = tmp_path / "greedy.yaml"
    greedy.write_text("executor: ray\nactor_num_cpus: 2.0\n", encoding="utf-8")
    job = create_prelabel_job(store, settings, model_name="tiny", job_config_path=greedy)
    started = time.monotonic()
    final = run_prelabel_job(store, settings, job.job_id)
    assert final.state == "failed" and "actor_num_cpus" in (final.message or "")
    assert time.monotonic() - started < 30
    assert store.count_predictions() == 0
    store.close()


def test_a_model_that_cannot_load_fails_the_job_with_its_reason(
    base: Path, ray_cluster: RayCluster
) -> None:
    store, settings = _store(base, "ghost")
    job = create_prelabel_job(store, settings, model_name="ghost")
    final = run_prelabel_job(store, settings, job.job_id)
    assert final.state == "failed"
    assert "weights for model 'ghost' are missing" in (final.message or "")
    assert "\x1b[" not in (final.message or "")
    store.close()


def test_decode_and_predict_run_as_separate_stages(base: Path, ray_cluster: RayCluster) -> None:
    import ray

    from engine.config import get_model_spec
    from engine.prelabel.pipeline import build_dataset

    store, settings = _store(base, "stages")
    todo = [{"item_id": i.item_id, "uri": str(i.uri)} for i in store.list_items(limit=4)]
    session = RaySession(resources=dict(ray.cluster_resources()), embedded=True)
    dataset = build_dataset(
        todo, settings, PrelabelConfig(rows_per_block=2), get_model_spec(settings, "tiny"), session
    )
    rows = sum(len(batch["item_id"]) for batch in dataset.iter_batches(batch_size=None))
    stats = dataset.stats()
    assert rows == len(todo)
    assert "MapBatches(decode_batch)->MapBatches(Predictor)" not in stats  # not fused
    assert "MapBatches(Predictor)" in stats and "MapBatches(decode_batch)" in stats
    store.close()


# Ray's node agents notice a dead raylet only after about a minute; they are
# reaped here (they are this test's own processes) instead of waited for.
_SLOW_TO_NOTICE = (b"ray::DashboardAgent", b"ray::RuntimeEnvAgent")


def _group_alive(pgid: int) -> dict[int, bytes]:
    """Live processes of process group ``pgid``: pid -> command line."""
    alive = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive[int(entry.name)] = cmdline
    return alive


def _reap_group(pgid: int) -> dict[int, bytes]:
    """Wait for the killed job's Ray processes to exit, then SIGKILL the slow agents.

    Returns the processes other than those agents still alive after 30 s.
    """
    deadline = time.monotonic() + 30
    stuck = _group_alive(pgid)
    while time.monotonic() < deadline:
        stuck = {
            pid: cmd
            for pid, cmd in _group_alive(pgid).items()
            if not cmd.startswith(_SLOW_TO_NOTICE)
        }
        if not stuck:
            break
        time.sleep(0.2)
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)
    return stuck


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_sigkill_midway_then_resume_gives_every_item_exactly_one_prediction(
    base: Path, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    store, settings = _store(base, "crash", folder="many")
    settings_yaml = tmp_path / "settings.yaml"
    settings_yaml.write_text(
        f"data_dir: {base / 'crash'}\ndata_roots: ['{base}']\nconfig_dir: {base / 'configs'}\n"
        "ray_num_cpus: 2\napi_token: t\n",
        encoding="utf-8",
    )
    job = create_prelabel_job(
        store, settings, model_name="tiny640", job_config_path=base / "kill_job.yaml"
    )
    version = str(job.model_version)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABELENGINE_", "RAY_"))}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.prelabel",
            "--config",
            str(settings_yaml),
            "--job-id",
            job.job_id,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while store.count_predictions(version) < 3:
            if proc.poll() is not None or time.monotonic() > deadline:
                output = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"job ended or stalled before the kill (rc={proc.poll()}):\n{output}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        leftovers = _reap_group(proc.pid)
        if proc.stdout:
            proc.stdout.close()
    shutil.rmtree(ray_temp_dir(settings), ignore_errors=True)  # the subprocess's Ray files
    assert not leftovers, f"Ray processes outlived the killed driver: {leftovers}"

    written_before = store.count_predictions(version)
    assert 3 <= written_before < 40, "the kill should land midway"
    assert store.get_job(job.job_id).state == "running"  # nobody marked the crash
    final = run_prelabel_job(store, settings, job.job_id)
    assert final.state == "succeeded", final.message
    assert (final.skipped, final.done, final.failed) == (written_before, 40 - written_before, 0)
    per_item = _predictions_per_item(store, version)
    assert len(per_item) == 40 and set(per_item.values()) == {1}
    suggestions = _suggestions_per_item(store, version)
    for item_id in per_item:
        probs_rows = store.prediction_probs(_prediction_id(store, item_id, version)).shape[0]
        assert suggestions.get(item_id, 0) == probs_rows  # no suggestion lost or doubled
    store.close()


def _prediction_id(store: Store, item_id: str, version: str) -> int:
    query = select(t.predictions.c.prediction_id).where(
        t.predictions.c.item_id == item_id, t.predictions.c.model_version == version
    )
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())
