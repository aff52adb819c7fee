"""A rich progress bar around an embed job, for the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.config import Settings
from engine.jobs import JobRecord

if TYPE_CHECKING:
    from rich.console import Console


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
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from engine.embedding.job import create_embed_job, run_embed_job
    from engine.store import Store

    console = console or Console()
    store = Store(settings.resolved_database_url)
    try:
        if job_id is None:
            job = create_embed_job(store, settings, model_name=model, top=top, limit=limit)
            job_id = job.job_id
        console.print(f"embed job [bold]{job_id}[/]")
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("embed", total=None, detail="starting")

            def update(job: JobRecord) -> None:
                progress.update(
                    task,
                    total=job.total or None,
                    completed=job.done + job.failed + job.skipped,
                    detail=f"{job.done} encoded, {job.failed} failed, {job.skipped} skipped",
                )

            final = run_embed_job(store, settings, job_id, on_progress=update)
        console.print(f"job {final.job_id}: {final.state}: {final.message or ''}")
        return final
    finally:
        store.close()
