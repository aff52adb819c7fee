"""The server's warm local Ray node: its jobs join it, it stops with the server,
and a node that cannot start leaves each job on its own embedded node as before.

Real Ray, real worker subprocesses, a real SQLite store; the model is a tiny
randomly initialised YOLO11n. Timings are printed (``pytest -s``), not asserted
tightly: the dev box has 2 shared cores.

Every Ray node here runs in a subprocess. These tests also pass with the session's
in-process node up (checked), but they run before it starts (tests/conftest.py runs
the ``ray_cluster`` tests last): the nodes they start inherit no ``RAY_*`` variables
from it and the timings share the cores with no other node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from tiny_models import tiny_yolo_spec, write_model_spec

from engine.config import Settings, child_env, load_settings
from engine.ingest import ingest
from engine.prelabel.ray_head import HeadInfo, LocalRayHead
from engine.prelabel.runtime import LOCAL_HEAD_ENV, local_head_address, ray_temp_dir
from engine.serving.app import create_app
from engine.serving.deps import get_launcher
from engine.serving.launcher import JobLauncher
from engine.store import Store

N_PHOTOS = 12
# two versions of the same tiny model, so a second job has the photos to do again
TINY_SPECS = [
    tiny_yolo_spec(name, imgsz_px=imgsz_px, max_det=10, batch_size=4)
    for name, imgsz_px in (("tiny", 160), ("tiny2", 128))
]
# executor: ray, else a backlog this small runs in the worker's own process, without Ray
JOB_YAML = (
    "executor: ray\nrows_per_block: 4\ndecode_batch_size: 4\nwrite_batch_size: 4\n"
    "torch_threads: 1\n"
)
JOB_TIMEOUT_S = 300
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("warm")
    for spec in TINY_SPECS:
        write_model_spec(root / "configs", spec)
    (root / "configs" / "jobs").mkdir()
    (root / "configs" / "jobs" / "prelabel.yaml").write_text(JOB_YAML, encoding="utf-8")
    rng = np.random.default_rng(3)
    (root / "photos").mkdir()
    for i in range(N_PHOTOS):
        shape = (int(rng.integers(48, 160)), int(rng.integers(48, 160)), 3)
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        image.save(root / "photos" / f"p{i:02d}.jpg", quality=90)
    return root


def _settings(base: Path, name: str, **overrides: Any) -> Settings:
    return load_settings(
        data_dir=base / name,
        data_roots=[base],
        config_dir=base / "configs",
        ray_num_cpus=2,
        api_token="t",
        **overrides,
    )


def _store(base: Path, settings: Settings) -> Store:
    store = Store(settings.resolved_database_url)
    assert not ingest(store, str(base / "photos"), settings.resolved_data_roots).errors
    return store


def _run_job(
    client: TestClient, launcher: JobLauncher, model: str = "tiny"
) -> tuple[dict[str, Any], float]:
    """POST a pre-label job, wait for its worker; the final job and its wall time."""
    started = time.monotonic()
    response = client.post("/jobs", json={"model": model})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert launcher.wait(job_id, timeout_s=JOB_TIMEOUT_S), f"job {job_id} still running"
    wall_s = time.monotonic() - started
    final = client.get(f"/jobs/{job_id}").json()
    assert final["state"] == "succeeded", (final, launcher.log_path(job_id).read_text())
    return final, wall_s


def _head_drivers(settings: Settings, head: LocalRayHead) -> list[dict[str, Any]]:
    """The head's job table (every driver that joined it), read by a fresh driver."""
    code = (
        "import json, ray\n"
        "from engine.config import load_settings\n"
        "from engine.prelabel.runtime import ray_session\n"
        "with ray_session(load_settings()) as session:\n"
        "    print(json.dumps([session.embedded, ray._private.state.jobs()], default=str))\n"
    )
    env = child_env(settings)
    env.update(head.job_env())
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    embedded, drivers = json.loads(out.stdout.strip().splitlines()[-1])
    assert embedded is True  # the engine's own single node: sizes are final
    return list(drivers)


def _group(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid:
                members.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _listening_hosts(processes: list[psutil.Process]) -> set[str]:
    hosts = set()
    for process in processes:
        try:
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    hosts.add(conn.laddr.ip)
        except psutil.Error:
            continue
    return hosts


def _ray_processes_under(temp_dir: Path) -> list[psutil.Process]:
    """Live processes whose command line names ``temp_dir`` (Ray's session files)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(temp_dir) in cmdline and process.pid != os.getpid():
            found.append(process)
    return found


def test_a_job_joins_the_servers_node_only_when_told_its_address(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(LOCAL_HEAD_ENV, raising=False)
    assert local_head_address(settings) is None
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert local_head_address(settings) is None  # a user's cluster: not ours
    monkeypatch.setenv(LOCAL_HEAD_ENV, "127.0.0.1:6380")
    assert local_head_address(settings) is None  # a marker for another node
    monkeypatch.setenv(LOCAL_HEAD_ENV, "127.0.0.1:6379")
    assert local_head_address(settings) == "127.0.0.1:6379"
    configured = settings.model_copy(update={"ray_address": "10.0.0.5:6379"})
    assert local_head_address(configured) is None  # the settings' cluster wins


def test_no_node_when_a_cluster_is_configured_or_warm_ray_is_off(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    head = LocalRayHead(settings.model_copy(update={"ray_address": "127.0.0.1:1"}))
    assert head.address() is None and head.job_env() == {} and head.pid is None
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    assert LocalRayHead(settings).job_env() == {}
    head.stop()  # never started: nothing to do
    off = create_app(settings.model_copy(update={"warm_ray": False}), store)
    assert off.state.ray_head is None and off.state.launcher.ray_head is None
    on = create_app(settings.model_copy(update={"warm_ray": True}), store)
    assert on.state.launcher.ray_head is on.state.ray_head
    assert on.state.ray_head.pid is None  # started by the first job, not before


@pytest.mark.slow
def test_server_jobs_share_one_warm_node_that_stops_with_the_server(base: Path) -> None:
    """Two jobs through the API join the same node (the node's own job table lists
    both workers); after shutdown no process of the node is left."""
    settings = _settings(base, "warm", warm_ray=True)
    store = _store(base, settings)
    app = create_app(settings, store)
    head: LocalRayHead = app.state.ray_head
    with TestClient(app, headers={"Authorization": "Bearer t"}) as client:
        launcher: JobLauncher = app.state.launcher
        first, first_s = _run_job(client, launcher)
        info = head.info
        assert isinstance(info, HeadInfo) and head.pid == info.holder_pid
        second, second_s = _run_job(client, launcher, "tiny2")
        assert head.info == info  # the same node, not a new one
        assert first["done"] == second["done"] == N_PHOTOS
        drivers = _head_drivers(settings, head)
        members = _group(info.holder_pid)
        assert {"raylet", "gcs_server"} <= {p.name() for p in members}
        assert _listening_hosts(members) <= LOOPBACK, _listening_hosts(members)
    entrypoints = " ".join(str(d["Entrypoint"]) for d in drivers)
    for job in (first, second):
        assert f"prelabel --job-id {job['job_id']}" in entrypoints, entrypoints
    assert all(d["DriverIPAddress"] == "127.0.0.1" for d in drivers)
    assert head.pid is None and not _group(info.holder_pid)
    assert not [p for p in members if p.is_running()], "processes of the node outlived it"
    assert not _ray_processes_under(ray_temp_dir(settings))
    store.close()

    cold_settings = _settings(base, "cold", warm_ray=False)
    cold_store = _store(base, cold_settings)
    cold_app = create_app(cold_settings, cold_store)
    with TestClient(cold_app, headers={"Authorization": "Bearer t"}) as client:
        cold, cold_s = _run_job(client, cold_app.state.launcher, "tiny2")
    assert cold["done"] == N_PHOTOS
    cold_store.close()
    print(
        f"\n{N_PHOTOS} photos, tiny models: cold {cold_s:.1f}s; warm node: first job "
        f"{first_s:.1f}s (node start included), second {second_s:.1f}s (same model as cold)"
    )
    # How much faster the warm node is, is a benchmark's business (benchmarks/
    # prelabel_throughput.py, docs/benchmarks.md: 1.22x); a timed assert flakes on a busy box.


@pytest.mark.slow
def test_one_job_at_a_time_on_the_warm_node(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job launched while another runs on the node gets no address (it starts its
    own node); the next one after it gets the node back. Training jobs never start it."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    settings = settings.model_copy(update={"ray_num_cpus": 1})
    head = LocalRayHead(settings)
    code = (
        "import os, sys, time; print(os.environ.get('RAY_ADDRESS', '-'), flush=True); "
        "time.sleep(float(sys.argv[1]))"
    )
    try:
        launcher = JobLauncher(
            settings, store, ray_head=head, argv_for=lambda _: [sys.executable, "-c", code, "4"]
        )
        ids = [store.create_job("prelabel", {}).job_id for _ in range(3)]
        launcher.start(ids[0])
        assert launcher.on_ray_head(ids[0]) and head.info is not None
        launcher.start(ids[1], argv_for=lambda _: [sys.executable, "-c", code, "0"])
        assert not launcher.on_ray_head(ids[1])
        assert launcher.wait(ids[0], timeout_s=60) and launcher.wait(ids[1], timeout_s=60)
        assert not launcher.on_ray_head(ids[0])
        launcher.start(ids[2], argv_for=lambda _: [sys.executable, "-c", code, "0"])
        assert launcher.wait(ids[2], timeout_s=60)
        printed = [launcher.log_path(i).read_text().strip() for i in ids]
        assert printed == [head.info.address, "-", head.info.address]
    finally:
        head.stop()


@pytest.mark.slow
def test_a_node_that_cannot_start_leaves_each_job_its_own(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The node is given 0.5 s to come up (it needs seconds): it is killed, the
    failure is kept (no retry per job) and the job runs on its own embedded node."""
    settings = _settings(base, "fallback", warm_ray=True)
    store = _store(base, settings)
    head = LocalRayHead(settings, ready_timeout_s=0.5)
    launcher = JobLauncher(settings, store, ray_head=head)
    app = create_app(settings, store)
    app.dependency_overrides[get_launcher] = lambda: launcher
    with TestClient(app, headers={"Authorization": "Bearer t"}) as client:
        final, wall_s = _run_job(client, launcher)
    assert final["done"] == N_PHOTOS
    assert head.pid is None and head.info is None and head.address() is None
    assert "could not start a local Ray node; jobs start their own: not up within 0.5s" in (
        caplog.text
    )
    holders = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(head.info_path) in (p.info["cmdline"] or [])
    ]
    assert not holders
    assert not _ray_processes_under(ray_temp_dir(settings))
    print(f"\nfallback job: {wall_s:.1f}s on its own embedded node")
    store.close()


@pytest.mark.slow
def test_a_worker_whose_node_is_gone_starts_its_own(settings: Settings) -> None:
    """The server's node died after the launch: the worker starts an embedded node
    at once (``ray.init`` would wait minutes for the dead address)."""
    code = (
        "import json, time, ray\n"
        "from engine.config import load_settings\n"
        "from engine.prelabel.runtime import ray_session\n"
        "started = time.monotonic()\n"
        "with ray_session(load_settings()) as session:\n"
        "    nodes = ray.nodes()\n"
        "    print(json.dumps([session.embedded, len(nodes), time.monotonic() - started]))\n"
    )
    env = child_env(settings.model_copy(update={"ray_num_cpus": 1}))
    env.update({"RAY_ADDRESS": "127.0.0.1:1", LOCAL_HEAD_ENV: "127.0.0.1:1"})
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    embedded, n_nodes, took_s = json.loads(out.stdout.strip().splitlines()[-1])
    assert (embedded, n_nodes) == (True, 1)
    assert took_s < 60
    assert "local Ray node at 127.0.0.1:1 is gone" in out.stderr
