"""The ``labelengine`` command line: models, ingest, prelabel, serve, demo, users.

Every command reads settings the same way (``--config`` YAML, then
``LABELENGINE_*`` environment) and prints errors as one readable line.
"""

# The docstring above is the app's --help text. The commands live by group in
# models, data, jobs, review, labelstudio, serve and users (shared options in common);
# they are registered here, in one place, so --help lists them in this order.
# Every heavy import (torch, Ray, FastAPI, the database layer) stays inside a command.

from __future__ import annotations

import sys

import typer

from engine.cli import (
    data,
    jobs,
    labelstudio,
    models,
    node,
    quality,
    ranking,
    review,
    serve,
    users,
)
from engine.cli.common import console
from engine.config import ConfigError

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(models.models_app, name="models")
app.command()(data.ingest)
app.command()(jobs.prelabel)
app.command()(jobs.embed)
app.command()(data.top)
app.command()(ranking.rank)
app.add_typer(jobs.train_app, name="train")
app.command()(review.calibrate)
app.command()(review.route)
app.command()(serve.serve)
app.command()(serve.samples)
app.command()(serve.demo)
app.command()(labelstudio.push)
app.command("export")(data.export_labels)
app.command()(labelstudio.connect)
app.add_typer(users.users_app, name="users")
app.add_typer(node.ray_app, name="ray")
app.add_typer(quality.quality_app, name="quality")
app.add_typer(quality.report_app, name="report")
app.add_typer(quality.batch_app, name="batch")


def main() -> None:
    try:
        app()
    except (ConfigError, PermissionError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
