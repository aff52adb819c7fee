"""Request dependencies as ``Annotated`` aliases: settings, store, annotator, auth.

Everything comes from ``request.app.state`` (filled by ``create_app``), so
tests can swap any of them with ``app.dependency_overrides``.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)

from engine.config import Settings
from engine.segment.service import InteractiveSegmenter
from engine.serving.launcher import JobLauncher
from engine.store import Store

ANONYMOUS = "anonymous"

_bearer = HTTPBearer(
    auto_error=False,
    description="the API token: LABELENGINE_API_TOKEN, else the file <data_dir>/api_token",
)

_basic = HTTPBasic(
    auto_error=False,
    realm="labelengine",
    description="as Label Studio sends it: user = basic_auth_user (LABELENGINE_BASIC_AUTH_USER, "
    "default 'labelengine'), password = the API token",
)
LS_AUTH_CHALLENGE = {"WWW-Authenticate": 'Basic realm="labelengine"'}


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    store: Store | None = getattr(request.app.state, "store", None)
    if store is None:
        raise RuntimeError("the store is not open: run the app inside its lifespan")
    return store


def get_launcher(request: Request) -> JobLauncher:
    launcher: JobLauncher = request.app.state.launcher
    return launcher


def get_segmenter(request: Request) -> InteractiveSegmenter:
    segmenter: InteractiveSegmenter = request.app.state.segmenter
    return segmenter


def get_annotator(
    x_annotator: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=128,
            description=f"who is labeling; '{ANONYMOUS}' when absent",
        ),
    ] = None,
) -> str:
    return x_annotator.strip() if x_annotator and x_annotator.strip() else ANONYMOUS


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless ``Authorization: Bearer <token>`` carries the API token."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(
            401,
            "missing bearer token: send 'Authorization: Bearer <token>' with the token from "
            "LABELENGINE_API_TOKEN or <data_dir>/api_token",
            headers=challenge,
        )
    expected: bytes = request.app.state.token_bytes
    if not secrets.compare_digest(credentials.credentials.encode("utf-8"), expected):
        raise HTTPException(401, "invalid bearer token", headers=challenge)


def require_ls_auth(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> None:
    """Label Studio's routes: the bearer token, or HTTP Basic (``basic_auth_user``, token).

    401 with ``WWW-Authenticate: Basic`` otherwise.
    """
    expected: bytes = request.app.state.token_bytes
    if bearer is not None:
        if secrets.compare_digest(bearer.credentials.encode("utf-8"), expected):
            return
        raise HTTPException(401, "invalid bearer token", headers=LS_AUTH_CHALLENGE)
    if basic is not None:
        user: str = request.app.state.settings.basic_auth_user
        user_ok = secrets.compare_digest(basic.username.encode("utf-8"), user.encode("utf-8"))
        password_ok = secrets.compare_digest(basic.password.encode("utf-8"), expected)
        if user_ok and password_ok:
            return
        raise HTTPException(
            401,
            "invalid Basic credentials: the user is basic_auth_user (LABELENGINE_BASIC_AUTH_USER) "
            "and the password the API token",
            headers=LS_AUTH_CHALLENGE,
        )
    raise HTTPException(
        401,
        "missing credentials: in Label Studio's model settings choose Basic auth with user "
        f"{request.app.state.settings.basic_auth_user!r} and the API token as password "
        "(or send 'Authorization: Bearer <token>')",
        headers=LS_AUTH_CHALLENGE,
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
LauncherDep = Annotated[JobLauncher, Depends(get_launcher)]
AnnotatorDep = Annotated[str, Depends(get_annotator)]
SegmenterDep = Annotated[InteractiveSegmenter, Depends(get_segmenter)]
