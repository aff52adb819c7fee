"""``POST /webhook``: Label Studio's annotation events and START_TRAINING.

The logic lives in ``engine.labelstudio.webhook``; this module reads the body
(a clear 422 when it is not JSON), supplies the trainers START_TRAINING may queue
(``engine.training``, run by the job launcher) and runs it in the threadpool.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from engine.labelstudio.webhook import NER_TRAINER, StartTraining, handle_webhook
from engine.serving.deps import get_launcher, get_store
from engine.serving.launcher import JobLauncher, train_ner_argv
from engine.serving.schemas.common import ErrorOut
from engine.store import Store
from engine.training.ner import create_ner_training_job

log = logging.getLogger(__name__)
router = APIRouter(tags=["labelstudio"])


def training_starter(store: Store, launcher: JobLauncher) -> StartTraining:
    """``start_training(trainer)`` for ``handle_webhook``: record the trainer's job (on the
    store's reviewed data) and start its worker; returns the job id at once."""

    def start_training(trainer: str) -> str:
        if trainer != NER_TRAINER:
            raise ValueError(f"no trainer {trainer!r}")
        job = create_ner_training_job(store, {"source": "store"})
        launcher.start(job.job_id, argv_for=train_ner_argv)
        return job.job_id

    return start_training


class WebhookOut(BaseModel):
    """What the webhook did (decision counts; ``recorded`` = new feedback records)."""

    action: str = Field(description="the webhook's action, as sent")
    status: str = Field(description="ok | ignored | skipped | queued")
    accepted: int = Field(description="suggestions kept as predicted")
    edited: int = Field(description="suggestions whose region or label was changed")
    rejected: int = Field(description="suggestions the annotation dropped")
    skipped: int = Field(description="cancelled (skipped) annotations")
    unlinked: int = Field(description="regions drawn from scratch, stored as item-level labels")
    unseen: int = Field(description="suggestions Label Studio did not show (not judged)")
    invalid: int = Field(description="results that did not fit the item (see reasons)")
    withdrawn: int = Field(description="feedback records withdrawn (deleted / superseded)")
    recorded: int = Field(description="feedback records newly written (0 for a replay)")
    job_id: str | None = Field(default=None, description="the queued training job")
    items: list[str] = Field(description="items the annotations were recorded on")
    reasons: list[str] = Field(description="why something was skipped or not used")


@router.post(
    "/webhook",
    response_model=WebhookOut,
    summary="Label Studio webhook",
    description="ANNOTATION_CREATED / ANNOTATION_UPDATED become accept / edit / reject / "
    "skip feedback on the suggestions the annotation names (idempotent: a replay records "
    "nothing new; an update supersedes); ANNOTATIONS_DELETED withdraws it; START_TRAINING "
    "queues a training job (202) and returns at once. Other actions answer "
    '``{"status": "ignored"}``.',
    responses={
        202: {"model": WebhookOut, "description": "a training job was queued"},
        422: {"model": ErrorOut, "description": "the body is not a Label Studio webhook"},
    },
)
async def webhook(request: Request) -> JSONResponse:
    raw = await request.body()
    try:
        payload: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPException(
            422, f"webhook body is not JSON ({exc}); Label Studio sends a JSON object"
        ) from exc
    store = get_store(request)
    start_training = training_starter(store, get_launcher(request))
    try:
        result = await run_in_threadpool(
            handle_webhook, store, payload, start_training=start_training
        )
    except OSError as exc:
        raise HTTPException(500, f"could not start the training worker: {exc.strerror}") from exc
    # Label Studio drops the answer, so the log is where an editor's lost decision shows.
    log.info(
        "webhook %s: %s, %d recorded, %d withdrawn%s",
        result.action,
        result.status,
        result.recorded,
        result.withdrawn,
        f"; {'; '.join(result.reasons[:5])}" if result.reasons else "",
    )
    body = WebhookOut.model_validate(result.to_dict()).model_dump(mode="json")
    return JSONResponse(body, status_code=202 if result.status == "queued" else 200)
