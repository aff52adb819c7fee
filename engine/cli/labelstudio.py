"""``labelengine push|connect``: predictions into Label Studio, the engine as its backend."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import (
    ConfigOpt,
    LabelStudioKeyOpt,
    LabelStudioUrlOpt,
    ProjectOpt,
    _fail,
    _label_studio_access,
    _settings,
    console,
)


def push(
    project: ProjectOpt,
    label_studio_url: LabelStudioUrlOpt = None,
    api_key: LabelStudioKeyOpt = None,
    model_version: Annotated[
        str | None, typer.Option(help="Which stored predictions (default: the only version).")
    ] = None,
    chunk_size: Annotated[int, typer.Option(min=1, max=5000, help="Items per request.")] = 500,
    media_url_prefix: Annotated[
        str, typer.Option(help="Prefix for image paths (default: Label Studio local files).")
    ] = "/data/local-files/?d=",
    media_root: Annotated[
        Path,
        typer.Option(help="Image paths are sent relative to this (its LOCAL_FILES_DOCUMENT_ROOT)."),
    ] = Path("/"),
    config: ConfigOpt = None,
) -> None:
    """Write stored predictions into a Label Studio project in chunks (resumable)."""
    from engine.labelstudio.client import LabelStudioClient, LabelStudioError
    from engine.labelstudio.push import ChunkResult, MediaMapping, PushReport, push_predictions
    from engine.store import Store

    settings = _settings(config)
    url, key = _label_studio_access(settings, label_studio_url, api_key)

    def progress(chunk: ChunkResult, report: PushReport) -> None:
        state = "ok" if chunk.error is None else f"[red]refused[/]: {chunk.error[:300]}"
        console.print(
            f"request {chunk.index}: {chunk.n_items} {chunk.kind}, {chunk.n_bytes / 1e6:.2f} MB, "
            f"{chunk.seconds:.1f} s, {state}  (pushed {report.pushed}, failed {report.failed})"
        )

    try:
        with LabelStudioClient(url, key) as client:
            report = push_predictions(
                Store(settings.resolved_database_url),
                client,
                project,
                model_version=model_version,
                chunk_size=chunk_size,
                media=MediaMapping(media_url_prefix, media_root),
                on_chunk=progress,
            )
    except (ValueError, LabelStudioError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"job {report.job_id} ({report.model_version}): {report.summary()}")
    if report.failed:
        console.print("see the errors with GET /jobs/{id}/errors; a rerun retries them")
        raise typer.Exit(code=1)


def connect(
    project: ProjectOpt,
    label_studio_url: LabelStudioUrlOpt = None,
    api_key: LabelStudioKeyOpt = None,
    engine_url: Annotated[
        str | None,
        typer.Option(help="The engine's URL as Label Studio reaches it (default: host:port)."),
    ] = None,
    title: Annotated[str, typer.Option(help="The backend's name in Label Studio.")] = "labelengine",
    interactive: Annotated[
        bool, typer.Option("--interactive/--no-interactive", help="Click-to-segment.")
    ] = True,
    config: ConfigOpt = None,
) -> None:
    """Connect the engine to a Label Studio project as its ML backend (idempotent).

    Registers it with Basic auth (basic_auth_user, the API token) and gives the
    webhook Label Studio creates for it the same credentials, so annotations come
    back as feedback.
    """
    from engine.labelstudio.client import LabelStudioClient, LabelStudioError
    from engine.labelstudio.connect import connect_engine

    settings = _settings(config)
    url, key = _label_studio_access(settings, label_studio_url, api_key)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    engine = engine_url or f"http://{host}:{settings.port}"
    try:
        with LabelStudioClient(url, key) as client:
            report = connect_engine(
                client,
                project,
                engine,
                user=settings.basic_auth_user,
                token=settings.token(),
                title=title,
                interactive=interactive,
            )
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    except LabelStudioError as exc:
        hint = ""
        if exc.path.startswith("/api/ml") and exc.status == 400:
            hint = f" (is the engine serving at {engine}, reachable from Label Studio?)"
        raise _fail(f"{exc}{hint}") from exc
    for line in report.lines():
        console.print(line)
