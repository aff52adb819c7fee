"""A rich progress bar around a pre-label job, for the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.config import Settings
from engine.store import JobRecord

if TYPE_CHECKING:
    from rich.console import Console


def run_with_progress(
    settings: Settings,
    *,
    model: str,
    segmenter: str | None = None,
    limit: int | None = None,
    job_id: str | None = None,
    console: Console | None = None,
) -> JobRecord:
    """Create a job for ``model`` (chained with ``segmenter`` when given), or resume
    ``job_id``, and run it with a progress bar."""
    from rich.console import Console

    from engine.prelabel.job import create_prelabel_job, run_prelabel_job
    from engine.prelabel.runner import job_progress
    from engine.store import Store

    console = console or Console()
    store = Store(settings.resolved_database_url)
    try:
        if job_id is None:
            job_id = create_prelabel_job(
                store, settings, model_name=model, segmenter_name=segmenter, limit=limit
            ).job_id
        console.print(f"pre-label job [bold]{job_id}[/]")
        with job_progress(console, "pre-label", "new") as update:
            job = run_prelabel_job(store, settings, job_id, on_progress=update)
        console.print(f"job {job.job_id}: {job.state}: {job.message or ''}")
        return job
    finally:
        store.close()
