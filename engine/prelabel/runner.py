"""Run a recorded item job to the end: the lifecycle every batch job shares.

``run_item_job`` plans (items to do, items skipped), marks the job running,
executes, and records the outcome: ``succeeded`` with a summary, ``failed``
with a readable message (logged, not raised), or ``cancelled`` on Ctrl-C
(re-raised). ``job_progress`` is the command line's progress bar for it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sized
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from engine.store import JobRecord, Store

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger(__name__)

ProgressCallback = Callable[[JobRecord], None]
Todo = TypeVar("Todo", bound=Sized)
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def failure_message(exc: BaseException) -> str:
    """One readable message: Ray wraps worker errors with colour codes; drop them."""
    return _ANSI_ESCAPE.sub("", describe_error(exc)).strip()[:4000]


def run_item_job(
    store: Store,
    job_id: str,
    *,
    plan: Callable[[JobRecord], tuple[Todo, int]],
    execute: Callable[[Todo, Callable[[], None]], None],
    done_word: str,
    on_progress: ProgressCallback | None = None,
) -> JobRecord:
    """Plan and execute job ``job_id``; returns its final record (see the module doc).

    ``plan(job)`` gives ``(todo, skipped)``; ``execute(todo, notify)`` does the
    work, calling ``notify()`` after each recorded batch. Counters describe this
    run: ``total = skipped + len(todo)``.
    """

    def notify() -> None:
        if on_progress is not None:
            on_progress(store.get_job(job_id))

    try:
        todo, skipped = plan(store.get_job(job_id))
        store.update_job(
            job_id,
            state="running",
            total=len(todo) + skipped,
            skipped=skipped,
            done=0,
            failed=0,
            message=None,
        )
        notify()
        if len(todo):
            execute(todo, notify)
    except BaseException as exc:
        cancelled = not isinstance(exc, Exception)
        if not cancelled:
            log.exception("job %s failed", job_id)
        state = "cancelled" if cancelled else "failed"
        store.update_job(job_id, state=state, message=failure_message(exc))
        notify()
        if cancelled:
            raise
        return store.get_job(job_id)
    final = store.get_job(job_id)
    summary = f"{final.done} {done_word}, {final.failed} failed, {final.skipped} skipped"
    store.update_job(job_id, state="succeeded", message=summary)
    notify()
    return store.get_job(job_id)


@contextmanager
def job_progress(console: Console, label: str, done_word: str) -> Iterator[ProgressCallback]:
    """A progress bar on ``console``; yields the ``on_progress`` callback that moves it."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=None, detail="starting")

        def update(job: JobRecord) -> None:
            progress.update(
                task,
                total=job.total or None,
                completed=job.done + job.failed + job.skipped,
                detail=f"{job.done} {done_word}, {job.failed} failed, {job.skipped} skipped",
            )

        yield update
