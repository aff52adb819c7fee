"""Jobs: start a pre-label job in a worker process, follow its progress and errors."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from engine.config import ConfigError, model_specs
from engine.serving.deps import LauncherDep, SettingsDep, StoreDep
from engine.serving.schemas.common import ErrorOut
from engine.serving.schemas.jobs import JobErrorOut, JobIn, JobOut

log = logging.getLogger(__name__)
router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=64, description="the job's id")]


def _check_model(settings: SettingsDep, name: str) -> None:
    try:
        specs = model_specs(settings.config_dir)
    except ConfigError as exc:
        log.error("model configuration is invalid: %s", exc)
        raise HTTPException(
            500, "the server's model configuration is invalid; the server log names the file"
        ) from exc
    if name not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise HTTPException(422, f"unknown model {name!r}; configured models: {known}")


@router.post(
    "",
    response_model=JobOut,
    status_code=202,
    summary="Start a pre-label job",
    description="Creates the job and starts it in a background worker process; poll "
    "``GET /jobs/{job_id}`` for progress.",
    responses={422: {"model": ErrorOut, "description": "unknown model or bad limit"}},
)
def start_job(body: JobIn, store: StoreDep, settings: SettingsDep, launcher: LauncherDep) -> JobOut:
    _check_model(settings, body.model)
    if body.segmenter is not None:
        _check_model(settings, body.segmenter)
    from engine.prelabel.job import create_prelabel_job  # heavy: imported on first use

    job = create_prelabel_job(
        store, settings, model_name=body.model, segmenter_name=body.segmenter, limit=body.limit
    )
    try:
        launcher.start(job.job_id)
    except OSError as exc:
        raise HTTPException(500, f"could not start the job worker: {exc.strerror}") from exc
    return JobOut.of(store.get_job(job.job_id))


@router.get("", response_model=list[JobOut], summary="List jobs, newest first")
def list_jobs(store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[JobOut]:
    return [JobOut.of(job) for job in store.list_jobs(limit=limit)]


@router.get(
    "/{job_id}",
    response_model=JobOut,
    summary="A job's state and progress",
    responses={404: {"model": ErrorOut, "description": "no such job"}},
)
def get_job(job_id: JobId, store: StoreDep) -> JobOut:
    return JobOut.of(store.get_job(job_id))


@router.get(
    "/{job_id}/errors",
    response_model=list[JobErrorOut],
    summary="Items a job could not process, and why",
    responses={404: {"model": ErrorOut, "description": "no such job"}},
)
def get_job_errors(
    job_id: JobId, store: StoreDep, limit: Annotated[int, Query(ge=1, le=10000)] = 1000
) -> list[JobErrorOut]:
    return [JobErrorOut.of(error) for error in store.job_errors(job_id, limit=limit)]
