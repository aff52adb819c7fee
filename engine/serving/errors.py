"""Exception handlers: every error is JSON ``{"detail": "..."}`` a person can act on.

Bad input is a 4xx, never a 5xx: ``NotFoundError`` -> 404, ``ValueError`` ->
422, ``PathNotAllowedError`` -> 403, ``LeaseHeldError``, ``NotAssignedError`` and
``QualityStateError`` -> 409, missing or
corrupt weights (``AssetError``) -> 503 naming ``labelengine models pull NAME``,
request validation -> 422 listing each field. Anything else is a 500 with a generic
message; the stack trace goes to the log, never into the response.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from engine.assets import AssetError
from engine.paths import PathNotAllowedError
from engine.quality.consensus import NotAssignedError, QualityStateError
from engine.review.queue import LeaseHeldError
from engine.store import NotFoundError

log = logging.getLogger(__name__)


def _loc(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc) or "(request)"


def validation_message(errors: Sequence[Any]) -> str:
    """One line per problem: ``body.region.box.box_xyxy: <what is wrong>``."""
    return "; ".join(f"{_loc(err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in errors)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    structured = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in errors
    ]
    return JSONResponse(
        status_code=422,
        content=jsonable_encoder(
            {"detail": f"invalid request: {validation_message(errors)}", "errors": structured}
        ),
    )


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


async def _lease_held(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(exc)})


async def _weights_missing(request: Request, exc: Exception) -> JSONResponse:
    # AssetError names the model and the `labelengine models pull NAME` that fixes it.
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(status_code=503, content={"detail": str(exc)})


async def _value_error(request: Request, exc: Exception) -> JSONResponse:
    # The same shape as a request validation error: the value is fine field by field.
    return JSONResponse(
        status_code=422, content={"detail": str(exc) or "invalid value", "errors": []}
    )


async def _path_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    # The full message names server paths: log it, answer without them.
    log.warning("%s %s refused: %s", request.method, request.url.path, exc)
    return JSONResponse(
        status_code=403,
        content={
            "detail": "the file lies outside the configured data roots; an operator can "
            "allow its folder with LABELENGINE_DATA_ROOTS"
        },
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    log.error(
        "unhandled error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc
    )
    return JSONResponse(
        status_code=500,
        content={"detail": f"internal server error (id {error_id}); the server log has details"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_exception_handler(PathNotAllowedError, _path_not_allowed)
    app.add_exception_handler(LeaseHeldError, _lease_held)
    app.add_exception_handler(NotAssignedError, _lease_held)
    app.add_exception_handler(QualityStateError, _lease_held)
    app.add_exception_handler(AssetError, _weights_missing)
    app.add_exception_handler(ValueError, _value_error)
    # A pydantic error raised inside a route is a server bug, not bad input:
    # request bodies are validated before the route runs (RequestValidationError).
    app.add_exception_handler(ValidationError, _unexpected)
    app.add_exception_handler(Exception, _unexpected)
