"""``labelengine calibrate|route``: auto-accept thresholds, and applying them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import ConfigOpt, _fail, _settings, console


def calibrate(
    target_precision: Annotated[float, typer.Option(min=0.5, max=1.0)] = 0.98,
    min_count: Annotated[int, typer.Option(min=1)] = 50,
    model_version: Annotated[str | None, typer.Option()] = None,
    write: Annotated[Path | None, typer.Option(help="Write thresholds as YAML here.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Per-label auto-accept thresholds from stored feedback, with precision / recall."""
    import yaml

    from engine.review.routing import calibrate_from_store
    from engine.store import Store

    settings = _settings(config)
    report = calibrate_from_store(
        Store(settings.resolved_database_url),
        target_precision,
        min_count=min_count,
        model_version=model_version,
    )
    console.print(report.to_markdown())
    if write is not None:
        routing = report.to_config()
        data = {"default": routing.default_threshold, "labels": dict(routing.label_thresholds)}
        write.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
        console.print(f"thresholds written to {write}; apply with `labelengine route {write}`")


def route(
    thresholds: Annotated[Path, typer.Argument(help="YAML: {default: 0.97, labels: {...}}")],
    config: ConfigOpt = None,
) -> None:
    """Auto-accept suggestions above their label's threshold (reversible)."""
    from engine.config import read_yaml
    from engine.review.routing import RoutingConfig, route_suggestions
    from engine.store import Store

    settings = _settings(config)
    try:
        routing = RoutingConfig.from_mapping(read_yaml(thresholds))
    except ValueError as exc:
        raise _fail(f"{thresholds}: {exc}") from exc
    result = route_suggestions(Store(settings.resolved_database_url), routing)
    console.print(
        f"machine-accepted {result.suggestions} suggestions; {result.items} items left the queue"
    )
