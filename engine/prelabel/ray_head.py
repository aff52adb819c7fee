"""One warm local Ray node for the server's jobs.

Without a cluster to join (``ray_address`` / ``RAY_ADDRESS``), every job worker
would start and stop its own embedded Ray node: ~6 s of start-up and shutdown
per job. With ``warm_ray`` (opt-in) the server starts one node on its first
Ray job instead and passes its address to each job worker (``RAY_ADDRESS``, plus
``LOCAL_HEAD_ENV`` so the worker treats it as the engine's own single node).

The node is held by a small process, ``python -m engine.prelabel.ray_head
INFO_PATH``, that runs the very ``start_local_ray`` an embedded job runs (loopback
only, no dashboard, sized by ``ray_num_cpus`` / ``ray_object_store_bytes``, temp
files under the data dir), writes ``INFO_PATH`` (address, node id, process ids)
once Ray is up, and shuts Ray down on SIGTERM or when the server is gone. It runs
in its own process group, which is killed as a last resort, so no Ray process
outlives ``stop()``. If the node cannot start, jobs fall back to their own
embedded node, as without ``warm_ray``.

``labelengine ray start`` runs the same holder detached (``standing=True``, its
report in the data dir's ``runtime.STANDING_NODE_FILE``): it outlives the
command, and every later job of that data dir joins it
(``engine.prelabel.runtime.ray_session``) until ``labelengine ray stop``.

This module never imports Ray in the server process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.config import Settings, child_env
from engine.prelabel.runtime import (
    AUTH_MODE_ENV,
    LOCAL_HEAD_ENV,
    cluster_address,
    standing_node_path,
)

log = logging.getLogger(__name__)

POLL_S = 0.2
DETACHED_FLAG = "--detached"


@dataclass(frozen=True)
class HeadInfo:
    """What the holder process reports once its Ray node is up."""

    address: str  # GCS address, 127.0.0.1:PORT
    node_id: str
    holder_pid: int
    ray_pids: dict[str, list[int]]  # Ray's own processes by type (gcs_server, raylet, ...)
    auth_mode: str  # RAY_AUTH_MODE the node runs with ("token" by default since Ray 2.5x)


class LocalRayHead:
    """A lazily started local Ray node, shared by the jobs one server launches.

    ``address()`` starts it on first use (blocking until it is reachable, at most
    ``ready_timeout_s``) and returns its address, or None when the node is not
    wanted (a cluster is configured) or could not start; a start failure is
    logged once and not retried. ``stop()`` shuts it down; safe to call twice.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        ready_timeout_s: float = 120.0,
        stop_timeout_s: float = 20.0,
        standing: bool = False,
    ) -> None:
        self.settings = settings
        self.standing = standing  # outlives this process (`labelengine ray start`)
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.info: HeadInfo | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._failed = False
        self._lock = threading.Lock()

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir.expanduser().resolve()

    @property
    def info_path(self) -> Path:
        return (
            standing_node_path(self.settings) if self.standing else self.data_dir / "ray-head.json"
        )

    @property
    def log_path(self) -> Path:
        return self.info_path.with_suffix(".log")

    @property
    def pid(self) -> int | None:
        """The holder's process id (its process group id too) while it runs."""
        return self._process.pid if self._process is not None else None

    def address(self) -> str | None:
        """The running node's address, starting it first if needed; None: no node."""
        if cluster_address(self.settings):
            return None  # the jobs join the configured cluster
        with self._lock:
            if self._process is not None and self._process.poll() is None and self.info:
                return self.info.address
            if self._failed:
                return None
            if self._process is not None:
                log.warning(
                    "the local Ray node exited (code %s); starting a new one (log: %s)",
                    self._process.returncode,
                    self.log_path,
                )
                self._reap()
            try:
                self.info = self._start()
            except (OSError, RuntimeError) as exc:
                self._failed = True
                self._reap()
                log.error("could not start a local Ray node; jobs start their own: %s", exc)
                return None
            log.info(
                "local Ray node up at %s (holder pid %d)", self.info.address, self.info.holder_pid
            )
            return self.info.address

    def job_env(self) -> dict[str, str]:
        """Environment variables that point a job worker at the node ({} without one)."""
        address = self.address()
        if address is None or self.info is None:
            return {}
        env = {"RAY_ADDRESS": address, LOCAL_HEAD_ENV: address}
        if self.info.auth_mode:
            # A new local node turns token auth on (the token in ~/.ray or as set in
            # RAY_AUTH_TOKEN[_PATH], which workers inherit); a joining driver must too.
            env[AUTH_MODE_ENV] = self.info.auth_mode
        return env

    def stop(self) -> None:
        """Shut the node down: SIGTERM to the holder, then its whole process group."""
        with self._lock:
            if self._process is None:
                return
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("the local Ray node did not stop in %gs", self.stop_timeout_s)
            self._reap()
            log.info("local Ray node stopped")

    def _start(self) -> HeadInfo:
        self.info_path.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = child_env(self.settings)
        env.pop("RAY_ADDRESS", None)
        env.pop(LOCAL_HEAD_ENV, None)
        argv = [sys.executable, "-m", "engine.prelabel.ray_head", str(self.info_path)]
        if self.standing:
            argv.append(DETACHED_FLAG)
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise RuntimeError(f"its process exited with code {code}; see {self.log_path}")
            info = read_info(self.info_path)
            if info is not None and info.holder_pid == self._process.pid:
                return info
            time.sleep(POLL_S)
        raise RuntimeError(f"not up within {self.ready_timeout_s:g}s; see {self.log_path}")

    def _reap(self) -> None:
        """Kill whatever is left in the holder's process group and forget it."""
        process = self._process
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the group is empty: everything exited
        except PermissionError:  # pragma: no cover - the group id was reused
            log.warning("process group %d is not ours any more; left alone", process.pid)
        process.wait()
        self._process = None
        self.info_path.unlink(missing_ok=True)


def read_info(path: Path) -> HeadInfo | None:
    """The holder's report at ``path``; None until it was written."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return HeadInfo(
        address=data["address"],
        node_id=data["node_id"],
        holder_pid=data["holder_pid"],
        ray_pids={k: list(v) for k, v in data["ray_pids"].items()},
        auth_mode=data["auth_mode"],
    )


def hold_node(settings: Settings, info_path: Path, *, detached: bool = False) -> None:
    """Run in the holder process: start the node, report it, keep it until told to stop.

    Stops on SIGTERM / SIGINT or, unless ``detached``, once the process that started
    it (the server) is gone.
    """
    import ray

    from engine.prelabel.runtime import start_local_ray

    parent_pid = os.getppid()
    start_local_ray(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    node = ray._private.worker.global_worker.node
    if node is None:  # pragma: no cover - ray.init returned without a node
        raise RuntimeError("Ray started no local node")
    ray_pids = {
        kind: [p.process.pid for p in infos if p.process is not None]
        for kind, infos in node.all_processes.items()
    }
    info = {
        "address": ray.get_runtime_context().gcs_address,
        "node_id": ray.get_runtime_context().get_node_id(),
        "holder_pid": os.getpid(),
        "ray_pids": ray_pids,
        "auth_mode": os.environ.get(AUTH_MODE_ENV, ""),  # ray.init sets it
    }
    partial = info_path.with_suffix(".tmp")
    partial.write_text(json.dumps(info), encoding="utf-8")
    partial.replace(info_path)
    print(f"local Ray node up: {json.dumps(info)}", flush=True)
    try:
        while not stop.wait(1.0):
            if not detached and os.getppid() != parent_pid:
                print("the server is gone; stopping", flush=True)
                break
    finally:
        ray.shutdown()
        print("local Ray node stopped", flush=True)


def stop_standing_node(settings: Settings, timeout_s: float = 20.0) -> bool:
    """Stop the data dir's standing node (SIGTERM, then its whole process group);
    whether one was running."""
    path = standing_node_path(settings)
    info = read_info(path)
    if info is None:
        return False
    try:
        os.kill(info.holder_pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _running(info.holder_pid):
        time.sleep(POLL_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(info.holder_pid, signal.SIGKILL)  # whatever Ray left in the group
    path.unlink(missing_ok=True)
    return True


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (our own child, not yet reaped) is not running
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def main(argv: list[str]) -> int:
    from engine.config import load_settings

    if not 1 <= len(argv) <= 2 or argv[1:] not in ([], [DETACHED_FLAG]):
        print(
            f"usage: python -m engine.prelabel.ray_head INFO_PATH [{DETACHED_FLAG}]",
            file=sys.stderr,
        )
        return 2
    hold_node(load_settings(), Path(argv[0]), detached=argv[1:] == [DETACHED_FLAG])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
