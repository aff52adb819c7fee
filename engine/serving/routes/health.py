"""``GET /health``: liveness and a few counts, without authentication."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import SQLAlchemyError

from engine.serving.deps import StoreDep
from engine.serving.schemas import HealthOut

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
        return HealthOut(
            status="ok",
            version=version,
            schema_version=store.schema_version(),
            items=store.count_items(),
            predictions=store.count_predictions(),
        )
    except SQLAlchemyError as exc:
        log.error("health check: database unavailable: %s", exc)
        response.status_code = 503
        return HealthOut(
            status="unavailable",
            version=version,
            schema_version=None,
            items=None,
            predictions=None,
            detail=f"the database cannot be read ({type(exc).__name__})",
        )
