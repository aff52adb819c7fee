"""Job records: id, kind, state, config, progress counts and per-item errors.

A job's progress counts are derived from what was written (``done`` counts
predictions written by this job run, ``failed`` distinct items with an error),
so a crash between two updates cannot make them lie for long.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, get_args

from sqlalchemy import delete, func, insert, select, update

from engine.store import schema as t
from engine.store.base import NotFoundError, StoreCore, aware, now_utc
from engine.store.records import JobError, JobRecord, job_of

JobState = Literal["pending", "running", "succeeded", "failed", "cancelled"]
JOB_STATES: tuple[str, ...] = get_args(JobState)
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})

_JOB = t.jobs.c
_ERR = t.job_errors.c


class JobQueries(StoreCore):
    def create_job(
        self,
        kind: str,
        config: dict[str, Any],
        *,
        model_name: str | None = None,
        model_version: str | None = None,
        job_id: str | None = None,
    ) -> JobRecord:
        job_id = job_id or f"{kind}-{uuid.uuid4().hex[:12]}"
        now = now_utc()
        with self.engine.begin() as conn:
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
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> JobRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.jobs).where(_JOB.job_id == job_id)).first()
        if row is None:
            raise NotFoundError(f"job {job_id!r} not found")
        return job_of(row)

    def list_jobs(self, *, limit: int = 50) -> list[JobRecord]:
        query = select(t.jobs).order_by(_JOB.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [job_of(row) for row in conn.execute(query)]

    def update_job(self, job_id: str, **values: Any) -> None:
        """Set state / counts / message; an unknown state is a ``ValueError``."""
        state = values.get("state")
        if state is not None and state not in JOB_STATES:
            raise ValueError(f"job state must be one of {JOB_STATES}, got {state!r}")
        with self.engine.begin() as conn:
            result = conn.execute(
                update(t.jobs).where(_JOB.job_id == job_id).values(updated_at=now_utc(), **values)
            )
        if result.rowcount == 0:
            raise NotFoundError(f"job {job_id!r} not found")

    def add_progress(self, job_id: str, *, done: int = 0, failed: int = 0) -> None:
        """Atomically add to a job's counters (safe from concurrent writers)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(t.jobs)
                .where(_JOB.job_id == job_id)
                .values(done=_JOB.done + done, failed=_JOB.failed + failed, updated_at=now_utc())
            )

    def record_job_errors(self, job_id: str, errors: list[tuple[str, str]]) -> int:
        """Record ``(item_id, message)`` pairs once per item; returns how many were new."""
        rows = [
            {
                "job_id": job_id,
                "item_id": item_id,
                "message": message[:4000],
                "created_at": now_utc(),
            }
            for item_id, message in errors
        ]
        with self.engine.begin() as conn:
            return self._insert_ignore(conn, t.job_errors, rows)

    def clear_job_errors(self, job_id: str) -> int:
        """Forget a job's recorded errors (a new attempt retries those items)."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(t.job_errors).where(_ERR.job_id == job_id)).rowcount)

    def job_errors(self, job_id: str, *, limit: int = 1000) -> list[JobError]:
        self.get_job(job_id)
        query = (
            select(t.job_errors).where(_ERR.job_id == job_id).order_by(_ERR.error_id).limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                JobError(r.item_id, r.message, aware(r.created_at)) for r in conn.execute(query)
            ]

    def count_job_errors(self, job_id: str) -> int:
        query = select(func.count()).select_from(t.job_errors).where(_ERR.job_id == job_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
