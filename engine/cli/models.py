"""``labelengine models list|pull``: the weight files in the models cache."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from engine.cli.common import ConfigOpt, _fail, _settings, console
from engine.config import model_specs

models_app = typer.Typer(no_args_is_help=True, help="Weight files: list and pull.")


@models_app.command("list")
def models_list(config: ConfigOpt = None, verify: bool = False) -> None:
    """Show each configured model and whether its weights are present."""
    from engine.assets import asset_status

    settings = _settings(config)
    table = Table("model", "family", "state", "size (bytes)", "license", "path")
    for spec in model_specs(settings.config_dir).values():
        status = asset_status(settings.resolved_models_dir, spec, verify=verify)
        license_ = spec.asset.license if spec.asset else "-"
        table.add_row(
            spec.name,
            spec.family,
            status.state,
            str(status.size_bytes),
            license_,
            str(status.path or "-"),
        )
    console.print(table)


@models_app.command("pull")
def models_pull(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to pull (default: all).")
    ] = None,
    config: ConfigOpt = None,
    force: bool = False,
) -> None:
    """Fetch weight files into the models cache and verify their sha256."""
    from engine.assets import AssetError, pull

    settings = _settings(config)
    specs = model_specs(settings.config_dir)
    wanted = names or [n for n, s in specs.items() if s.asset is not None]
    for name in wanted:
        if name not in specs:
            raise _fail(f"unknown model {name!r}; configured: {', '.join(sorted(specs))}")
        try:
            path = pull(settings.resolved_models_dir, specs[name], force=force)
        except AssetError as exc:
            raise _fail(str(exc)) from exc
        console.print(f"[green]ok[/] {name}: {path}")
