"""A real Label Studio 1.23 for the tests: its own venv, started on loopback with SQLite.

Use it from a test module with ``pytest_plugins = ["lstudio"]`` (tests/ is on the
path: ``pythonpath`` in pyproject.toml) and mark the tests ``labelstudio``. The venv
is cached at ``~/.cache/labelengine/label-studio-1.23`` (first install ~50-85 s, then
reused); the server starts once per session on a free port with a preset user and
legacy API token (first start runs migrations, ~35 s) and is stopped with its whole
process group. A Label Studio that cannot be installed fails the tests, saying why.

Settings that matter to the tests:

- local files: ``LOCAL_FILES_SERVING_ENABLED`` with ``LOCAL_FILES_DOCUMENT_ROOT`` at
  ``label_studio_media_root`` (task data ``/data/local-files/?d=<path under it>``);
- loopback ML backends allowed (``ML_BLOCK_LOCAL_IP=false``, SSRF protection off);
- prediction validation ON (Label Studio's own ``LabelInterface.validate_prediction``
  rejects an import carrying a prediction it cannot show), so every pushed prediction is
  checked by Label Studio itself;
- request bodies capped at ``LS_MAX_REQUEST_BYTES`` (Django's
  ``DATA_UPLOAD_MAX_MEMORY_SIZE``, 250 MiB by default) so a test can make one over-size
  import without building hundreds of megabytes.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

LS_VERSION_PIN = "label-studio==1.23.*"
LS_VENV = Path("~/.cache/labelengine/label-studio-1.23").expanduser()
LS_USER = "tests@labelengine.local"
LS_PASSWORD = "labelengine-tests"
LS_TOKEN = "labelengine0test0token0000000000000000000"
LS_MAX_REQUEST_BYTES = 4 * 1024**2
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 240.0
_NO_NETWORK = (
    "Temporary failure in name resolution",
    "NewConnectionError",
    "Network is unreachable",
    "No matching distribution found",
    "Could not find a version",
    "ConnectTimeoutError",
)


class LiveLabelStudio(NamedTuple):
    url: str
    token: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_venv(venv: Path = LS_VENV) -> Path:
    """Install Label Studio into ``venv`` once (file-locked); returns its ``label-studio``.

    Fails the calling test, saying so, when the package index cannot be reached.
    """
    exe = venv / "bin" / "label-studio"
    marker = venv / ".installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and exe.is_file():
            return exe
        started = time.monotonic()
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(venv / "bin" / "pip"), "install", "--quiet", LS_VERSION_PIN],
        ]
        for step in steps:
            done = subprocess.run(
                step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
            if done.returncode != 0:
                tail = (done.stdout + done.stderr)[-3000:]
                if any(sign in tail for sign in _NO_NETWORK):
                    pytest.fail(f"cannot install {LS_VERSION_PIN} (no package index?): {tail}")
                raise RuntimeError(f"{' '.join(step)} failed ({done.returncode}):\n{tail}")
        marker.write_text(f"installed in {time.monotonic() - started:.0f} s\n")
    return exe


def ls_environment(data_dir: Path, media_root: Path, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO"))}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_USERNAME=LS_USER,
        LABEL_STUDIO_PASSWORD=LS_PASSWORD,
        LABEL_STUDIO_USER_TOKEN=token,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_ML_BLOCK_LOCAL_IP="false",
        LABEL_STUDIO_SSRF_PROTECTION_ENABLED="false",
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(media_root),
        LABEL_STUDIO_COLLECT_ANALYTICS="false",
        LABEL_STUDIO_DATA_UPLOAD_MAX_MEMORY_SIZE=str(LS_MAX_REQUEST_BYTES),
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        DJANGO_DB="sqlite",
        fflag_feat_utc_210_prediction_validation_15082025="true",
        PYTHONUNBUFFERED="1",
    )
    return env


def _answers(url: str, token: str) -> bool:
    import requests

    try:
        response = requests.get(
            f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}, timeout=5
        )
    except requests.RequestException:
        return False
    return response.status_code == 200


def _log_tail(path: Path, n_chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n_chars:]
    except OSError:
        return "(no log)"


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after 20 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start(
    exe: Path, data_dir: Path, media_root: Path, log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Start Label Studio and wait until the preset token works; returns (process, url)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1"]
    command += ["--port", str(port), "--host", url]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=data_dir,
            env=ls_environment(data_dir, media_root, LS_TOKEN),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if _answers(url, LS_TOKEN):
            return process, url
        time.sleep(1.0)
    stop(process)
    raise RuntimeError(
        f"Label Studio did not answer on {url} within {START_TIMEOUT_S:.0f} s "
        f"(exit code {process.returncode}); log tail:\n{_log_tail(log_path)}"
    )


@pytest.fixture(scope="session")
def label_studio_media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Label Studio's LOCAL_FILES_DOCUMENT_ROOT: files here are served as local files."""
    return tmp_path_factory.mktemp("ls-media")


@pytest.fixture(scope="session")
def label_studio(
    tmp_path_factory: pytest.TempPathFactory, label_studio_media_root: Path
) -> Iterator[LiveLabelStudio]:
    """A running Label Studio 1.23: ``(url, token)`` of its preset user."""
    t0 = time.monotonic()
    exe = ensure_venv()
    t1 = time.monotonic()
    data_dir = tmp_path_factory.mktemp("ls-data")
    process, url = start(exe, data_dir, label_studio_media_root, data_dir / "label-studio.log")
    t2 = time.monotonic()
    sys.stderr.write(f"\nLabel Studio: venv {t1 - t0:.1f} s, start {t2 - t1:.1f} s, {url}\n")
    try:
        yield LiveLabelStudio(url, LS_TOKEN)
    finally:
        stop(process)
