"""``labelengine serve|samples|demo``: the HTTP API, sample photos, the whole loop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import ConfigOpt, _settings, console
from engine.cli.data import ingest, top
from engine.cli.jobs import prelabel
from engine.cli.models import models_pull
from engine.config import Settings

DEMO_ADMIN = "demo-admin"


def serve(config: ConfigOpt = None) -> None:
    """Serve the HTTP API (uvicorn) and the review page at /."""
    from engine.serving.server import run_server

    settings = _settings(config)
    base = f"http://{settings.host}:{settings.port}"
    console.print(f"serving on {base}  service token: {settings.token()}")
    console.print(f"review page: {base}/  (sign in with a token: labelengine users add NAME)")
    run_server(settings)


def _demo_login(settings: Settings) -> str:
    """A fresh token for the demo's admin, as a one-click sign-in link (token in the
    URL fragment, which browsers never send to the server)."""
    from engine.review.people import reissue_person
    from engine.store import Store

    store = Store(settings.resolved_database_url)
    try:
        _, token = reissue_person(store, DEMO_ADMIN, "admin")
    finally:
        store.close()
    return f"http://{settings.host}:{settings.port}/#token={token}"


def samples(
    folder: Annotated[Path, typer.Argument(help="Where to write the sample photos.")],
) -> None:
    """Write the bundled sample photos (skimage + ultralytics) into a folder."""
    from engine.cli.samples import write_samples

    paths = write_samples(folder)
    console.print(f"wrote {len(paths)} sample photos to {folder}")


def demo(
    config: ConfigOpt = None,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """The whole loop on embedded defaults: pull, samples, ingest, pre-label, rank, serve."""
    settings = _settings(config)
    sample_dir = settings.data_dir / "samples"
    models_pull(names=None, config=config)  # every bundled weight: detector and segmenter
    samples(sample_dir)
    ingest(str(sample_dir), config=config)
    prelabel(model=settings.default_detector, config=config)
    top(config=config)
    link = _demo_login(settings)
    console.print(f"\n[bold]review page[/]: sign in as {DEMO_ADMIN} with one click: {link}")
    if serve_after:
        serve(config=config)
