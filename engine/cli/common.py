"""What every ``labelengine`` command shares: options, settings, errors, console.

Imports nothing heavy and none of the command modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from engine.config import REPO_CONFIG_DIR, Settings, load_settings

console = Console()

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Settings YAML (default: configs/server.yaml)."),
]
ProjectOpt = Annotated[int, typer.Option(min=1, help="Label Studio project id.")]
LabelStudioUrlOpt = Annotated[
    str | None, typer.Option(help="Label Studio base URL (default: settings).")
]
LabelStudioKeyOpt = Annotated[
    str | None,
    typer.Option(envvar="LABEL_STUDIO_API_KEY", help="Legacy token or personal access token."),
]


def _settings(config: Path | None) -> Settings:
    default = REPO_CONFIG_DIR / "server.yaml"
    path = config if config is not None else (default if default.is_file() else None)
    return load_settings(path)


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


def _label_studio_access(
    settings: Settings, url: str | None, api_key: str | None
) -> tuple[str, str]:
    """Label Studio's URL and key: the options, else the settings; both are needed."""
    url = url or settings.label_studio_url
    key = api_key or settings.label_studio_api_key
    if not url or not key:
        raise _fail("give --label-studio-url and --api-key (or LABEL_STUDIO_API_KEY)")
    return url, key
