"""A rich progress bar around a pre-label job, for the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.config import Settings
from engine.jobs import JobRecord

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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from engine.prelabel.job import create_prelabel_job, run_prelabel_job
    from engine.store import Store

    console = console or Console()
    store = Store(settings.resolved_database_url)
    try:
        if job_id is None:
            job_id = create_prelabel_job(
                store, settings, model_name=model, segmenter_name=segmenter, limit=limit
            ).job_id
        console.print(f"pre-label job [bold]{job_id}[/]")
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("pre-label", total=None, detail="starting")

            def update(job: JobRecord) -> None:
                progress.update(
                    task,
                    total=job.total or None,
                    completed=job.done + job.failed + job.skipped,
                    detail=f"{job.done} new, {job.failed} failed, {job.skipped} skipped",
                )

            job = run_prelabel_job(store, settings, job_id, on_progress=update)
        console.print(f"job {job.job_id}: {job.state}: {job.message or ''}")
        return job
    finally:
        store.close()
