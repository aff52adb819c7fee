"""``create_app(settings)``: the HTTP API, built on demand (there is no global app).

The store is passed in (tests) or opened in the lifespan and closed at
shutdown. Every router but ``/health`` requires a bearer token, and each needs a
role (``ROUTER_ROLES``). Routes are
plain ``def`` functions, so database and model calls run in the threadpool
and never block the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from engine.config import Settings
from engine.labelstudio.models import ModelHolder
from engine.prelabel.ray_head import LocalRayHead
from engine.segment.service import InteractiveSegmenter
from engine.serving.deps import get_person, require_ls_auth, require_role
from engine.serving.errors import install_error_handlers
from engine.serving.launcher import JobLauncher
from engine.serving.ls_backend import LabelStudioBackend
from engine.serving.routes import (
    feedback,
    health,
    interactive,
    items,
    jobs,
    labelstudio,
    page,
    people,
    quality,
    queue,
    ranking,
    suggestions,
)
from engine.serving.routes.labelstudio_webhook import router as labelstudio_webhook_router
from engine.serving.schemas.common import ErrorOut, ValidationErrorOut
from engine.store import Store

log = logging.getLogger(__name__)

DESCRIPTION = """
Model-assisted labeling: models pre-label a backlog, rank it by uncertainty,
and serve suggestions to any editor; the editor's decisions come back as feedback.

Every route but `/health` (and the review page at `/`) needs `Authorization: Bearer
<token>`: a person's own token (`labelengine users add NAME --role annotator|reviewer|admin`)
or the service token (`LABELENGINE_API_TOKEN`, else the file `<data_dir>/api_token`), which
acts as admin for the person named in `X-Annotator`. Label Studio's routes (`/setup`,
`/predict`, `/versions`, `/webhook`) take the service token, or HTTP Basic auth as Label
Studio sends it (user `basic_auth_user`, password the token). Errors are JSON
`{"detail": "..."}`. Boxes are absolute pixels `box_xyxy`; spans are character
offsets `[start, end)`.
"""

TAGS = [
    {"name": "health", "description": "Liveness and counts; no token needed."},
    {"name": "items", "description": "The images and texts to label."},
    {"name": "suggestions", "description": "What the models proposed for an item."},
    {"name": "feedback", "description": "Editors' accept / edit / reject / skip decisions."},
    {"name": "queue", "description": "Items leased to annotators, most useful first."},
    {"name": "people", "description": "Who the token is; people and their roles (admin)."},
    {"name": "jobs", "description": "Background pre-label jobs and their progress."},
    {
        "name": "quality",
        "description": "Consensus, gold, the reviewer queue and the quality report (reviewers).",
    },
    {"name": "interactive", "description": "Click-to-segment: cached embedding, decoder only."},
    {
        "name": "labelstudio",
        "description": "Label Studio's ML-backend protocol (paste the base URL into Label "
        "Studio); HTTP Basic auth: user basic_auth_user, password the API token.",
    },
]

AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "missing or wrong bearer token"},
    422: {"model": ValidationErrorOut, "description": "invalid request"},
}


ROLE_RESPONSES: dict[int | str, dict[str, object]] = {
    403: {"model": ErrorOut, "description": "the person's role does not allow it"},
}
# The least role each router needs (engine.review.people: annotator < reviewer < admin).
ROUTER_ROLES = (
    (items, "annotator"),
    (suggestions, "annotator"),
    (feedback, "annotator"),
    (queue, "annotator"),
    (interactive, "annotator"),
    (quality, "reviewer"),
    (ranking, "reviewer"),
    (jobs, "admin"),
)


def package_version() -> str:
    try:
        return metadata.version("labelengine")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def create_app(
    settings: Settings,
    store: Store | None = None,
    segmenter: InteractiveSegmenter | None = None,
    models: ModelHolder | None = None,
    *,
    preload_models: bool | None = None,
) -> FastAPI:
    """Build the API. A given ``store`` is used as is and left open at shutdown.

    The segmenter for ``/interactive`` is built from ``settings.interactive_model``
    and the Label Studio detector / tagger (``models``) from ``default_detector`` /
    ``default_tagger``, unless given. With ``preload_models`` (default: when the
    app opens its own store, i.e. a real server) the detector and tagger load at
    startup, before the first request, so ``/setup`` answers within Label Studio's
    3 s; otherwise on first use. ``/health`` never loads a model.
    """

    serving = preload_models if preload_models is not None else store is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if serving:
            await asyncio.to_thread(_preload, app)
        try:
            if store is not None:
                yield
                return
            opened = Store(settings.resolved_database_url)
            _attach_store(app, settings, opened)
            log.info("store open: %s", opened.engine.url.render_as_string(hide_password=True))
            try:
                yield
            finally:
                opened.close()
        finally:
            try:
                # The prefetch worker must stop before the interpreter tears torch down.
                app.state.segmenter.close()
            finally:
                if app.state.ray_head is not None:  # started by the first job, if any
                    await asyncio.to_thread(app.state.ray_head.stop)

    app = FastAPI(
        title="labelengine",
        version=package_version(),
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url="/docs" if settings.open_docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.open_docs else None,
    )
    if not settings.open_docs:
        _token_docs(app)
    app.state.settings = settings
    app.state.token = settings.token()
    app.state.token_bytes = app.state.token.encode("utf-8")
    # A real server prefetches from the first lease on (loading the segmenter for it).
    app.state.segmenter = segmenter or InteractiveSegmenter(settings, load_for_prefetch=serving)
    app.state.models = models or ModelHolder(settings)
    app.state.ray_head = LocalRayHead(settings) if settings.warm_ray else None
    app.state.ls_backend = LabelStudioBackend(
        settings, app.state.models, segmenter=app.state.segmenter
    )
    if store is not None:
        _attach_store(app, settings, store)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(page.router)  # the review page at /: no token, it holds no data
    app.mount("/static", page.static_files(), name="static")
    for module, role in ROUTER_ROLES:
        app.include_router(
            module.router,
            dependencies=[Depends(require_role(role))],
            responses={**AUTH_RESPONSES, **ROLE_RESPONSES},
        )
    app.include_router(people.router, dependencies=[Depends(get_person)], responses=AUTH_RESPONSES)
    app.include_router(
        labelstudio_webhook_router,
        dependencies=[Depends(require_ls_auth)],
        responses=AUTH_RESPONSES,
    )
    app.include_router(
        labelstudio.router, dependencies=[Depends(require_ls_auth)], responses=AUTH_RESPONSES
    )
    return app


def _token_docs(app: FastAPI) -> None:
    """``/openapi.json`` and ``/docs`` behind the bearer token (``open_docs`` opens them)."""

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(get_person)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(get_person)])
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")


def _preload(app: FastAPI) -> None:
    """Load the detector, the tagger and the interactive segmenter; a failure is logged,
    not fatal (the model loads on first use, or its route answers 503 naming the fix).

    Label Studio gives ``/setup`` about 3 s, which a segmenter built on a mask
    project's first ``/setup`` can miss on a busy machine; and the first click
    should pay the encoder, not the model load.
    """
    app.state.models.load_all()
    try:
        app.state.segmenter.model  # noqa: B018  (builds it)
    except Exception as exc:  # startup goes on; /interactive and /setup report it
        log.error("cannot load the interactive segmenter: %s", exc)


def _attach_store(app: FastAPI, settings: Settings, store: Store) -> None:
    app.state.store = store
    app.state.launcher = JobLauncher(settings, store, ray_head=app.state.ray_head)
