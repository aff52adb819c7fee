"""Job records: id, kind, state, config, progress counts and per-item errors.

A job's progress counts are derived from what was written (``done`` counts
predictions written by this job run, ``failed`` distinct items with an error),
so a crash between two updates cannot make them lie for long.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import func, insert, select, update

from engine.store import NotFoundError, Store
from engine.store import schema as t

JobState = Literal["pending", "running", "succeeded", "failed", "cancelled"]
JOB_STATES: tuple[str, ...] = get_args(JobState)
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    kind: str
    state: str
    config: dict[str, Any]
    model_name: str | None
    model_version: str | None
    total: int
    done: int
    failed: int
    skipped: int
    message: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def remaining(self) -> int:
        return max(self.total - self.done - self.failed - self.skipped, 0)


@dataclass(frozen=True)
class JobError:
    item_id: str
    message: str
    created_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def create_job(
    store: Store,
    kind: str,
    config: dict[str, Any],
    *,
    model_name: str | None = None,
    model_version: str | None = None,
    job_id: str | None = None,
) -> JobRecord:
    job_id = job_id or f"{kind}-{uuid.uuid4().hex[:12]}"
    now = _now()
    with store.engine.begin() as conn:
        conn.execute(
            insert(t.jobs).values(
                job_id=job_id,
                kind=kind,
                state="pending",
                config=config,
                model_name=model_name,
                model_version=model_version,
                total=0,
                done=0,
                failed=0,
                skipped=0,
                created_at=now,
                updated_at=now,
            )
        )
    return get_job(store, job_id)


def get_job(store: Store, job_id: str) -> JobRecord:
    with store.engine.connect() as conn:
        row = conn.execute(select(t.jobs).where(t.jobs.c.job_id == job_id)).first()
    if row is None:
        raise NotFoundError(f"job {job_id!r} not found")
    return _job(row)


def list_jobs(store: Store, *, limit: int = 50) -> list[JobRecord]:
    query = select(t.jobs).order_by(t.jobs.c.created_at.desc()).limit(limit)
    with store.engine.connect() as conn:
        return [_job(row) for row in conn.execute(query)]


def update_job(store: Store, job_id: str, **values: Any) -> None:
    """Set state / counts / message; an unknown state is a ``ValueError``."""
    state = values.get("state")
    if state is not None and state not in JOB_STATES:
        raise ValueError(f"job state must be one of {JOB_STATES}, got {state!r}")
    with store.engine.begin() as conn:
        result = conn.execute(
            update(t.jobs).where(t.jobs.c.job_id == job_id).values(updated_at=_now(), **values)
        )
    if result.rowcount == 0:
        raise NotFoundError(f"job {job_id!r} not found")


def add_progress(store: Store, job_id: str, *, done: int = 0, failed: int = 0) -> None:
    """Atomically add to a job's counters (safe from concurrent writers)."""
    with store.engine.begin() as conn:
        conn.execute(
            update(t.jobs)
            .where(t.jobs.c.job_id == job_id)
            .values(done=t.jobs.c.done + done, failed=t.jobs.c.failed + failed, updated_at=_now())
        )


def record_errors(store: Store, job_id: str, errors: list[tuple[str, str]]) -> int:
    """Record ``(item_id, message)`` pairs once per item; returns how many were new."""
    rows = [
        {"job_id": job_id, "item_id": item_id, "message": message[:4000], "created_at": _now()}
        for item_id, message in errors
    ]
    with store.engine.begin() as conn:
        return store._insert_ignore(conn, t.job_errors, rows)


def job_errors(store: Store, job_id: str, *, limit: int = 1000) -> list[JobError]:
    get_job(store, job_id)
    query = (
        select(t.job_errors)
        .where(t.job_errors.c.job_id == job_id)
        .order_by(t.job_errors.c.error_id)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [JobError(r.item_id, r.message, _aware(r.created_at)) for r in conn.execute(query)]


def count_job_errors(store: Store, job_id: str) -> int:
    query = select(func.count()).select_from(t.job_errors).where(t.job_errors.c.job_id == job_id)
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _job(row: Any) -> JobRecord:
    return JobRecord(
        job_id=row.job_id,
        kind=row.kind,
        state=row.state,
        config=row.config,
        model_name=row.model_name,
        model_version=row.model_version,
        total=row.total,
        done=row.done,
        failed=row.failed,
        skipped=row.skipped,
        message=row.message,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )
