"""Start background jobs as subprocesses and watch them until they exit.

A job runs as ``python -m engine.cli prelabel --job-id ID`` (a training job:
``python -m engine.cli train ner --job-id ID``) with the server's
settings passed through ``LABELENGINE_*`` variables, so the worker opens the
same database, data roots and model folder. Its output goes to
``<data_dir>/jobs/<job_id>.log``. A worker that exits without bringing its
job to a final state (a crash, an import error) gets the job marked failed,
so no job stays "running" forever.

Given a ``LocalRayHead`` (the server passes one unless ``warm_ray`` is off), a
Ray job's worker joins that warm node instead of starting its own, one job at a
time: a job launched while another one runs on the node gets its own embedded
node as before (two jobs sized for the same CPUs on one node could starve each
other's decode tasks).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import Settings, child_env
from engine.store import FINAL_STATES, Store

if TYPE_CHECKING:
    from engine.prelabel.ray_head import LocalRayHead

log = logging.getLogger(__name__)

ArgvBuilder = Callable[[str], list[str]]


def prelabel_argv(job_id: str) -> list[str]:
    """The worker command line of a pre-label job."""
    return [sys.executable, "-m", "engine.cli", "prelabel", "--job-id", job_id]


def train_ner_argv(job_id: str) -> list[str]:
    """The worker command line of a ``train-ner`` job."""
    return [sys.executable, "-m", "engine.cli", "train", "ner", "--job-id", job_id]


# Jobs that never start Ray: no warm node for them.
RAY_FREE_ARGV: tuple[ArgvBuilder, ...] = (train_ner_argv,)


class JobLauncher:
    """Spawns one worker process per job and marks the job failed if it dies early."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        argv_for: ArgvBuilder = prelabel_argv,
        ray_head: LocalRayHead | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.argv_for = argv_for
        self.ray_head = ray_head
        self._watchers: dict[str, threading.Thread] = {}
        self._on_head: set[str] = set()  # jobs whose worker runs on the warm node
        self._lock = threading.Lock()

    def log_path(self, job_id: str) -> Path:
        return self.settings.data_dir.expanduser().resolve() / "jobs" / f"{job_id}.log"

    def start(self, job_id: str, argv_for: ArgvBuilder | None = None) -> int:
        """Start the worker of ``job_id``; returns its process id.

        ``argv_for`` builds the command line (default: the launcher's, a pre-label
        worker). An ``OSError`` while spawning marks the job failed and propagates.
        """
        build = argv_for or self.argv_for
        log_path = self.log_path(job_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = child_env(self.settings)
        env.update(self._ray_env(job_id, build))
        try:
            with log_path.open("ab") as log_file:
                process = subprocess.Popen(
                    build(job_id),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
        except OSError as exc:
            self._leave_head(job_id)
            self.store.update_job(
                job_id, state="failed", message=f"could not start the job worker: {exc}"
            )
            raise
        watcher = threading.Thread(
            target=self._watch, args=(job_id, process), name=f"watch-{job_id}", daemon=True
        )
        with self._lock:
            self._watchers[job_id] = watcher
        watcher.start()
        log.info("job %s started as pid %d (log: %s)", job_id, process.pid, log_path)
        return process.pid

    def wait(self, job_id: str, timeout_s: float | None = None) -> bool:
        """Block until the worker of ``job_id`` exited and was checked; False on timeout."""
        with self._lock:
            watcher = self._watchers.get(job_id)
        if watcher is None:
            raise KeyError(f"no worker was started here for job {job_id!r}")
        watcher.join(timeout_s)
        return not watcher.is_alive()

    def on_ray_head(self, job_id: str) -> bool:
        """Whether the worker of ``job_id`` was pointed at the warm node and still runs."""
        with self._lock:
            return job_id in self._on_head

    def _ray_env(self, job_id: str, build: ArgvBuilder) -> dict[str, str]:
        """The warm node's variables for this worker, if it is a Ray job and the node free."""
        if self.ray_head is None or build in RAY_FREE_ARGV:
            return {}
        with self._lock:
            if self._on_head:
                log.info("job %s: the warm Ray node is busy; the job starts its own", job_id)
                return {}
            self._on_head.add(job_id)
        env = self.ray_head.job_env()  # starts the node on first use (seconds)
        if not env:
            self._leave_head(job_id)
        return env

    def _leave_head(self, job_id: str) -> None:
        with self._lock:
            self._on_head.discard(job_id)

    def _watch(self, job_id: str, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        self._leave_head(job_id)
        try:
            job = self.store.get_job(job_id)
            if job.state in FINAL_STATES:
                log.info("job %s worker exited (code %d), job %s", job_id, code, job.state)
                return
            message = (
                f"the job worker exited with code {code} before finishing; "
                f"see {self.log_path(job_id)}"
            )
            self.store.update_job(job_id, state="failed", message=message)
            log.warning("job %s: %s", job_id, message)
        except Exception:  # a watcher thread must never die silently
            log.exception("job %s: could not check the state after the worker exited", job_id)
