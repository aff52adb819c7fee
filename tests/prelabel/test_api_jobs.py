"""Job routes and the worker launcher: validation, progress, errors, real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.config import Settings, child_env, load_settings, settings_env
from engine.serving.app import create_app
from engine.serving.deps import get_launcher
from engine.serving.launcher import JobLauncher, prelabel_argv
from engine.store import Store


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_unknown_model_is_422_naming_the_configured_ones(client: TestClient, store: Store) -> None:
    response = client.post("/jobs", json={"model": "yolo99"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("unknown model 'yolo99'; configured models: ")
    assert "yolo11n" in detail and "litemedsam" in detail
    assert store.list_jobs() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "yolo11n", "limit": 0}, "body.limit"),
        ({}, "body.model"),
        ({"model": "yolo11n", "batch": 3}, "body.batch"),
    ],
)
def test_bad_job_bodies_are_422(client: TestClient, body: dict[str, object], field: str) -> None:
    response = client.post("/jobs", json=body)
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_job_status_progress_and_errors(client: TestClient, store: Store) -> None:
    job = store.create_job(
        "prelabel", {"limit": 10}, model_name="yolo11n", model_version="yolo11n-abc"
    )
    fresh = client.get(f"/jobs/{job.job_id}").json()
    assert (fresh["state"], fresh["progress"], fresh["finished"]) == ("pending", 0.0, False)
    store.update_job(job.job_id, state="running", total=10, skipped=2)
    store.add_progress(job.job_id, done=5, failed=1)
    store.record_job_errors(job.job_id, [("img-7", "cannot identify image file")])
    running = client.get(f"/jobs/{job.job_id}").json()
    assert running["state"] == "running"
    assert (running["total"], running["done"], running["failed"], running["skipped"]) == (
        10,
        5,
        1,
        2,
    )
    assert running["progress"] == pytest.approx(0.8)
    assert running["remaining"] == 2
    assert running["config"] == {"limit": 10}
    errors = client.get(f"/jobs/{job.job_id}/errors").json()
    assert [(e["item_id"], e["message"]) for e in errors] == [
        ("img-7", "cannot identify image file")
    ]
    listed = client.get("/jobs").json()
    assert [j["job_id"] for j in listed] == [job.job_id]


def test_finished_empty_job_is_complete(client: TestClient, store: Store) -> None:
    job = store.create_job("prelabel", {})
    store.update_job(job.job_id, state="succeeded")
    body = client.get(f"/jobs/{job.job_id}").json()
    assert (body["progress"], body["finished"]) == (1.0, True)


def test_unknown_job_is_404(client: TestClient) -> None:
    for url in ("/jobs/nope", "/jobs/nope/errors"):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json() == {"detail": "job 'nope' not found"}


def test_post_job_creates_and_starts_a_worker(
    settings: Settings, store: Store, auth: dict[str, str]
) -> None:
    """The real route with a real worker process; the worker fails at once, and the
    watcher marks the job failed with a message naming the log."""
    launcher = JobLauncher(
        settings, store, argv_for=lambda job_id: _python(f"print('worker {job_id}'); exit(3)")
    )
    app = create_app(settings, store)
    app.dependency_overrides[get_launcher] = lambda: launcher
    with TestClient(app, headers=auth) as client:
        response = client.post("/jobs", json={"model": "yolo11n", "limit": 5})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        assert response.json()["model_name"] == "yolo11n"
        assert response.json()["state"] in {"pending", "failed"}
        assert launcher.wait(job_id, timeout_s=60)
        final = client.get(f"/jobs/{job_id}").json()
    assert final["state"] == "failed"
    assert "exited with code 3 before finishing" in final["message"]
    assert launcher.log_path(job_id).read_text().strip() == f"worker {job_id}"


def test_worker_that_finishes_its_job_is_left_alone(settings: Settings, store: Store) -> None:
    job = store.create_job("prelabel", {})
    code = (
        "from engine.config import load_settings; from engine.store import Store; "
        "from engine.store import jobs; import sys; "
        "s = load_settings(); "
        f"Store(s.resolved_database_url).update_job({job.job_id!r}, state='succeeded')"
    )
    launcher = JobLauncher(settings, store, argv_for=lambda _job_id: _python(code))
    launcher.start(job.job_id)
    assert launcher.wait(job.job_id, timeout_s=60)
    final = store.get_job(job.job_id)
    assert (final.state, final.message) == ("succeeded", None), launcher.log_path(
        job.job_id
    ).read_text()


def test_worker_rebuilds_the_same_settings(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path / "a", tmp_path / "b"],
        models_dir=tmp_path / "models",
        api_token="secret",
        ray_num_cpus=3,
        port=9000,
        lease_seconds=12.5,
    )
    code = "from engine.config import load_settings; print(load_settings().model_dump_json())"
    env = child_env(settings, base={"PATH": "/usr/bin", "LABELENGINE_PORT": "1"})
    out = subprocess.run(_python(code), env=env, capture_output=True, text=True, check=True)
    rebuilt = Settings.model_validate(json.loads(out.stdout))
    assert rebuilt.resolved_database_url == settings.resolved_database_url
    assert rebuilt.resolved_data_roots == settings.resolved_data_roots
    assert rebuilt.resolved_models_dir == settings.resolved_models_dir
    assert (rebuilt.port, rebuilt.ray_num_cpus, rebuilt.lease_seconds) == (9000, 3, 12.5)
    assert rebuilt.api_token is None  # a worker never sees the API token
    assert "LABELENGINE_API_TOKEN" not in settings_env(settings)


def test_prelabel_argv_runs_the_cli() -> None:
    assert prelabel_argv("job-1") == [
        sys.executable,
        "-m",
        "engine.cli",
        "prelabel",
        "--job-id",
        "job-1",
    ]


def test_post_job_chains_a_segmenter(
    settings: Settings, store: Store, auth: dict[str, str]
) -> None:
    launcher = JobLauncher(settings, store, argv_for=lambda job_id: _python("exit(0)"))
    app = create_app(settings, store)
    app.dependency_overrides[get_launcher] = lambda: launcher
    with TestClient(app, headers=auth) as client:
        unknown = client.post("/jobs", json={"model": "yolo11n", "segmenter": "sam99"})
        assert unknown.status_code == 422 and "unknown model 'sam99'" in unknown.json()["detail"]
        wrong = client.post("/jobs", json={"model": "yolo11n", "segmenter": "yolo11n"})
        assert wrong.status_code == 422, wrong.text
        assert "yolo11n" in wrong.json()["detail"]
        assert store.list_jobs() == []
        response = client.post("/jobs", json={"model": "yolo11n", "segmenter": "litemedsam"})
        assert response.status_code == 202, response.text
        assert response.json()["model_name"] == "yolo11n+litemedsam"
        assert launcher.wait(response.json()["job_id"], timeout_s=60)
