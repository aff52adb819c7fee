"""Batch jobs: what to start, their progress, their per-item errors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from engine.serving.schemas.common import Name, _In
from engine.store import FINAL_STATES, JobError, JobRecord


class JobIn(_In):
    model: Name = Field(description="a model configured under configs/models", examples=["yolo11n"])
    segmenter: Name | None = Field(
        default=None,
        description="a segmenter (family sam) turning each confident box of the detector "
        "into a mask, one encoder pass per image",
        examples=["litemedsam"],
    )
    limit: int | None = Field(default=None, gt=0, description="pre-label at most this many items")


class JobOut(BaseModel):
    job_id: str
    kind: str
    state: str = Field(description="pending, running, succeeded, failed or cancelled")
    model_name: str | None
    model_version: str | None
    config: dict[str, Any]
    total: int = Field(description="items the job covers")
    done: int
    failed: int
    skipped: int = Field(description="items already predicted by the same model version")
    remaining: int
    progress: float = Field(ge=0.0, le=1.0, description="(done + failed + skipped) / total")
    finished: bool
    message: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: JobRecord) -> JobOut:
        finished = job.state in FINAL_STATES
        handled = job.done + job.failed + job.skipped
        empty_progress = 1.0 if finished else 0.0
        progress = min(handled / job.total, 1.0) if job.total > 0 else empty_progress
        return cls(
            job_id=job.job_id,
            kind=job.kind,
            state=job.state,
            model_name=job.model_name,
            model_version=job.model_version,
            config=dict(job.config),
            total=job.total,
            done=job.done,
            failed=job.failed,
            skipped=job.skipped,
            remaining=job.remaining,
            progress=progress,
            finished=finished,
            message=job.message,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


class JobErrorOut(BaseModel):
    item_id: str
    message: str
    created_at: datetime

    @classmethod
    def of(cls, error: JobError) -> JobErrorOut:
        return cls(item_id=error.item_id, message=error.message, created_at=error.created_at)
