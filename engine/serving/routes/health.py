"""``GET /health``: liveness and a few counts, without authentication."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from engine.serving.deps import StoreDep
from engine.serving.schemas.common import HealthOut
from engine.store import StoreUnavailableError

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthOut,
    summary="Is the server up?",
    description="Answers without a token: status, version, schema version and counts. "
    "503 when the database cannot be read.",
    responses={503: {"model": HealthOut, "description": "the database is unavailable"}},
)
def health(request: Request, store: StoreDep, response: Response) -> HealthOut:
    version: str = request.app.version
    try:
        counts = store.health()
    except StoreUnavailableError as exc:
        log.error("health check: database unavailable: %s", exc.__cause__ or exc)
        response.status_code = 503
        return HealthOut(
            status="unavailable",
            version=version,
            schema_version=None,
            items=None,
            predictions=None,
            detail=str(exc),
        )
    return HealthOut(
        status="ok",
        version=version,
        schema_version=counts.schema_version,
        items=counts.items,
        predictions=counts.predictions,
    )
