"""``labelengine serve|samples|demo``: the HTTP API, sample photos, the whole loop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import ConfigOpt, _settings, console
from engine.cli.data import ingest, top
from engine.cli.jobs import prelabel
from engine.cli.models import models_pull


def serve(config: ConfigOpt = None) -> None:
    """Serve the HTTP API (uvicorn)."""
    from engine.serving.server import run_server

    settings = _settings(config)
    console.print(f"serving on http://{settings.host}:{settings.port}  token: {settings.token()}")
    run_server(settings)


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
    models_pull(names=[settings.default_detector], config=config)
    samples(sample_dir)
    ingest(str(sample_dir), config=config)
    prelabel(model=settings.default_detector, config=config)
    top(config=config)
    if serve_after:
        serve(config=config)
