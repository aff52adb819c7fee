"""The review page: ``GET /`` (``index.html``), the reviewers' quality page ``GET /quality``
(``quality.html``) and their assets under ``/static``.

Both answer without a token because they hold no data: the page reads its
token from the sign-in form or the ``#token=`` fragment of a login link and
sends it as ``Authorization: Bearer`` on every API call. Every asset ships in
the package (``engine/serving/static/``: no build step, no CDN), so the page
works on a machine without internet access. Neither route is in the OpenAPI
document.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)

# Scripts, styles, images and API calls come from this server alone; nothing inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def static_dir() -> Path:
    """``engine/serving/static`` inside the installed package."""
    return Path(__file__).resolve().parent.parent / "static"


def static_files() -> StaticFiles:
    """The app mounts this at ``/static`` (``create_app``)."""
    return StaticFiles(directory=static_dir())


@router.get("/", include_in_schema=False)
def review_page() -> FileResponse:
    return FileResponse(static_dir() / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/quality", include_in_schema=False)
def quality_page() -> FileResponse:
    """The reviewers' page: agreement, gold, the reviewer queue, calibration batches."""
    return FileResponse(static_dir() / "quality.html", media_type="text/html", headers=PAGE_HEADERS)
