"""The README's curl tour (``scripts/curl_tour.sh``) against a live ``labelengine serve``.

Real everything: the sample photos, ``labelengine ingest`` and ``labelengine prelabel
--model yolo11n`` (real weights) as subprocesses, the server as a subprocess on a free
loopback port, the tour in bash with curl, and the job worker the tour starts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.assets import asset_status
from engine.cli.samples import write_samples
from engine.config import REPO_CONFIG_DIR, Settings, get_model_spec, load_settings
from engine.store import FINAL_STATES, Store

pytestmark = pytest.mark.slow

REPO = REPO_CONFIG_DIR.parent
TOKEN = "tour-token"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _check_weights(settings: Settings) -> None:
    for name in ("yolo11n", "litemedsam"):
        status = asset_status(settings.resolved_models_dir, get_model_spec(settings, name))
        if status.state != "present":
            pytest.fail(
                f"weights for {name!r} are {status.state} at {status.path}: run "
                f"`labelengine models pull {name}` (make test pulls them before pytest)"
            )


@pytest.fixture
def tour_env(tmp_path: Path) -> tuple[dict[str, str], Settings]:
    """``LABELENGINE_*`` for a fresh data dir over the sample photos, a free port and a token."""
    models_dir = load_settings(REPO_CONFIG_DIR / "server.yaml").resolved_models_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELENGINE_")}
    env.pop("RAY_ADDRESS", None)
    env.update(
        LABELENGINE_DATA_DIR=str(tmp_path / "data"),
        LABELENGINE_DATA_ROOTS=json.dumps([str(tmp_path)]),
        LABELENGINE_MODELS_DIR=str(models_dir),
        LABELENGINE_PORT=str(_free_port()),
        LABELENGINE_API_TOKEN=TOKEN,
    )
    settings = load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path],
        models_dir=models_dir,
        config_dir=REPO_CONFIG_DIR,
        api_token=TOKEN,
        port=int(env["LABELENGINE_PORT"]),
    )
    _check_weights(settings)
    return env, settings


def _run(env: dict[str, str], cwd: Path, *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(BIN / "labelengine"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"labelengine {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture
def server(
    tour_env: tuple[dict[str, str], Settings], tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``labelengine serve`` on the pre-labeled samples, up once /health answers."""
    env, settings = tour_env
    photos = write_samples(tmp_path / "photos")
    assert len(photos) >= 5
    ingested = _run(env, tmp_path, "ingest", str(tmp_path / "photos"))
    assert f"ingested {len(photos)} new" in ingested
    _run(env, tmp_path, "prelabel", "--model", "yolo11n")
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "labelengine"), "serve"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{settings.port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /health in 180 s"
            time.sleep(0.5)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()


def _sections(stdout: str) -> dict[str, str]:
    """The tour's output by step: ``== name`` lines start a step, ``tour ok`` ends it."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in stdout.splitlines():
        if line == "tour ok":
            break
        if line.startswith("== "):
            current = line[3:].strip()
            out[current] = []
        elif current:
            out[current].append(line)
    return {name: "\n".join(lines).strip() for name, lines in out.items()}


def test_the_curl_tour_runs_against_a_live_server(
    server: tuple[str, subprocess.Popen[bytes]],
    tour_env: tuple[dict[str, str], Settings],
    tmp_path: Path,
) -> None:
    base, process = server
    env, settings = tour_env
    tour = subprocess.run(
        ["bash", "scripts/curl_tour.sh"],
        env={**env, "BASE": base, "TOKEN": TOKEN},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert tour.returncode == 0, f"{tour.stdout}\n{tour.stderr}"
    assert tour.stdout.rstrip().endswith("tour ok")
    steps = _sections(tour.stdout)
    assert list(steps) == [
        "health",
        "items",
        "next",
        "suggestions",
        "feedback",
        "segment",
        "job",
        "job state",
    ]
    n_photos = len(list((tmp_path / "photos").iterdir()))
    assert json.loads(steps["health"])["items"] == n_photos
    assert len(json.loads(steps["items"])["items"]) == 5
    lease = json.loads(steps["next"])
    item_id = lease["item_id"]
    assert lease["annotator"] == "ada" and lease["rank"] == 1
    suggestions = json.loads(steps["suggestions"])
    assert suggestions, "the leased item has no suggestion at min_score 0.25"
    assert all(s["score"] >= 0.25 for s in suggestions)
    feedback = json.loads(steps["feedback"])
    assert (feedback["annotator"], feedback["item_id"]) == ("ada", item_id)
    assert feedback["suggestion_id"] == suggestions[0]["suggestion_id"]
    segment = steps["segment"]  # cut at 300 characters by the tour
    assert segment.startswith(f'{{"item_id":"{item_id}"')
    assert '"masks":[{' in segment and '"model_version":"litemedsam-' in segment
    job = json.loads(steps["job"])
    assert job["model_name"] == "yolo11n" and job["state"] in ("pending", "running")
    assert json.loads(steps["job state"])["job_id"] == job["job_id"]

    headers = {"Authorization": f"Bearer {TOKEN}"}
    stats = httpx.get(f"{base}/interactive/stats", headers=headers, timeout=10).json()
    assert stats["loaded"] is True and stats["encoder_calls"] >= 1
    assert stats["prefetch"]["requests"] == 1  # the lease started a prefetch
    # Let the lease's prefetch finish first: a server stopped mid-prefetch aborts
    # (tests/segment/test_prefetch_shutdown.py).
    deadline = time.monotonic() + 180
    while stats["prefetch"]["outstanding"]:
        assert time.monotonic() < deadline, f"the prefetch did not finish: {stats['prefetch']}"
        time.sleep(0.5)
        stats = httpx.get(f"{base}/interactive/stats", headers=headers, timeout=10).json()
    assert stats["prefetch"]["errors"] == 0 and stats["prefetch"]["encoded"] >= 1

    store = Store(settings.resolved_database_url)
    try:
        (record,) = store.feedback_for(item_id)
        assert record.feedback.annotator == "ada"
        assert record.feedback.action == "accept"
        assert store.get_suggestion(feedback["suggestion_id"]).status == "accepted"
        assert len(store.suggestions_for(item_id, min_score=0.25)) == len(suggestions)

        process.send_signal(signal.SIGINT)  # stop the server; its job worker goes on
        code = process.wait(timeout=60)
        server_log = (tmp_path / "server.log").read_text(errors="replace")
        assert code in (0, 130), f"the server exited with {code}:\n{server_log[-2000:]}"
        assert "Application shutdown complete" in server_log
        deadline = time.monotonic() + 240
        while (state := store.get_job(job["job_id"])).state not in FINAL_STATES:
            assert time.monotonic() < deadline, f"the tour's job is still {state.state}"
            time.sleep(1)
        final = store.get_job(job["job_id"])
        # everything was pre-labeled before the server started: the job skips it all
        assert (final.state, final.done, final.failed) == ("succeeded", 0, 0), final.message
        assert final.skipped == final.total == n_photos
    finally:
        store.close()
    log = settings.data_dir / "jobs" / f"{job['job_id']}.log"
    assert log.is_file()
