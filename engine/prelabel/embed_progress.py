"""A rich progress bar around an embed job, for the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.config import Settings
from engine.store import JobRecord

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

    from engine.prelabel.embed_job import create_embed_job, run_embed_job
    from engine.prelabel.runner import job_progress
    from engine.store import Store

    console = console or Console()
    store = Store(settings.resolved_database_url)
    try:
        if job_id is None:
            job = create_embed_job(store, settings, model_name=model, top=top, limit=limit)
            job_id = job.job_id
        console.print(f"embed job [bold]{job_id}[/]")
        with job_progress(console, "embed", "encoded") as update:
            final = run_embed_job(store, settings, job_id, on_progress=update)
        console.print(f"job {final.job_id}: {final.state}: {final.message or ''}")
        return final
    finally:
        store.close()
