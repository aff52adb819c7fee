"""Rich progress bars around the batch jobs, for the command line.

Both commands create a job (or resume ``job_id``), print its id, run it under
``runner.job_progress`` and print the outcome; only the job differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.config import Settings
from engine.store import JobRecord

if TYPE_CHECKING:
    from rich.console import Console

    from engine.prelabel.runner import ProgressCallback
    from engine.store import Store

Create = Callable[["Store"], str]
Run = Callable[["Store", str, "ProgressCallback"], JobRecord]


def run_with_progress(
    settings: Settings,
    *,
    model: str,
    segmenter: str | None = None,
    limit: int | None = None,
    job_id: str | None = None,
    console: Console | None = None,
) -> JobRecord:
    """Create a pre-label job for ``model`` (chained with ``segmenter`` when given), or
    resume ``job_id``, and run it with a progress bar."""
    from engine.prelabel.job import create_prelabel_job, run_prelabel_job

    def create(store: Store) -> str:
        return create_prelabel_job(
            store, settings, model_name=model, segmenter_name=segmenter, limit=limit
        ).job_id

    def run(store: Store, job: str, update: ProgressCallback) -> JobRecord:
        return run_prelabel_job(store, settings, job, on_progress=update)

    return _run(settings, ("pre-label", "new"), create, run, job_id, console)


def run_embed_with_progress(
    settings: Settings,
    *,
    model: str | None = None,
    top: int | None = None,
    limit: int | None = None,
    job_id: str | None = None,
    console: Console | None = None,
) -> JobRecord:
    """Create an embed job (or resume ``job_id``) and run it with a progress bar."""
    from engine.prelabel.embed_job import create_embed_job, run_embed_job

    def create(store: Store) -> str:
        return create_embed_job(store, settings, model_name=model, top=top, limit=limit).job_id

    def run(store: Store, job: str, update: ProgressCallback) -> JobRecord:
        return run_embed_job(store, settings, job, on_progress=update)

    return _run(settings, ("embed", "encoded"), create, run, job_id, console)


def _run(
    settings: Settings,
    words: tuple[str, str],
    create: Create,
    run: Run,
    job_id: str | None,
    console: Console | None,
) -> JobRecord:
    from rich.console import Console

    from engine.prelabel.runner import job_progress
    from engine.store import Store

    label, done_word = words
    console = console or Console()
    store = Store(settings.resolved_database_url)
    try:
        job_id = job_id or create(store)
        console.print(f"{label} job [bold]{job_id}[/]")
        with job_progress(console, label, done_word) as update:
            job = run(store, job_id, update)
        console.print(f"job {job.job_id}: {job.state}: {job.message or ''}")
        return job
    finally:
        store.close()
