"""Request dependencies as ``Annotated`` aliases: settings, store, the person, auth.

``PersonDep`` is who the request acts for (``engine.review.people``: a person's
own token, or the service token with ``X-Annotator``); ``require_role(role)``
answers 403 to anyone whose role does not include ``role``.

Everything comes from ``request.app.state`` (filled by ``create_app``), so
tests can swap any of them with ``app.dependency_overrides``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)

from engine.config import Settings
from engine.review.people import Person, person_for_token
from engine.segment.service import InteractiveSegmenter
from engine.serving.launcher import JobLauncher
from engine.store import Store

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


def get_person(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_annotator: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=128,
            description="with the service token: the person it acts for ('anonymous' when "
            "absent); ignored with a person's own token",
        ),
    ] = None,
) -> Person:
    """401 unless ``Authorization: Bearer <token>`` is the service token or a person's."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(
            401,
            "missing bearer token: send 'Authorization: Bearer <token>' with your own token "
            "(labelengine users add NAME) or the service token (LABELENGINE_API_TOKEN or "
            "<data_dir>/api_token)",
            headers=challenge,
        )
    person = person_for_token(
        get_store(request), credentials.credentials, request.app.state.token, x_annotator
    )
    if person is None:
        raise HTTPException(401, "invalid or revoked bearer token", headers=challenge)
    return person


def require_role(role: str) -> Callable[[Person], Person]:
    """A dependency: the person, or 403 when their role does not include ``role``."""

    def check(person: Annotated[Person, Depends(get_person)]) -> Person:
        if not person.may(role):
            raise HTTPException(
                403,
                f"{person.name!r} is an {person.role}; this needs the {role} role "
                f"(an admin runs: labelengine users add NAME --role {role})",
            )
        return person

    check.__name__ = f"require_{role}"
    return check


def acting_as(person: Person, requested: str | None) -> str:
    """The annotator a body names: anyone for the service token, else the person alone."""
    if requested is None or requested == person.name or person.service:
        return requested or person.name
    raise HTTPException(
        403, f"{person.name!r} cannot act as {requested!r}: a token acts for its own person"
    )


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
PersonDep = Annotated[Person, Depends(get_person)]
SegmenterDep = Annotated[InteractiveSegmenter, Depends(get_segmenter)]
