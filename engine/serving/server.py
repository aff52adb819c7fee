"""Run the API with uvicorn: ``labelengine serve`` calls ``run_server``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine.config import Settings
from engine.serving.app import create_app
from engine.store import Store

if TYPE_CHECKING:
    import uvicorn


def build_server(
    settings: Settings, *, store: Store | None = None, log_level: str = "info"
) -> uvicorn.Server:
    """A uvicorn server for the app on ``settings.host:settings.port``, not yet started."""
    import uvicorn

    config = uvicorn.Config(
        create_app(settings, store),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
    )
    return uvicorn.Server(config)


def run_server(settings: Settings, *, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM shut it down cleanly).

    The engine's own loggers print at ``log_level`` beside uvicorn's (model loads,
    webhook outcomes, failed tasks), unless the process configured logging already.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s"
        )
    build_server(settings, log_level=log_level).run()
