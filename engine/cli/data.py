"""``labelengine ingest|top|export``: items into the store, the queue, labels out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import ConfigOpt, _fail, _settings, console


def ingest(
    source: Annotated[str, typer.Argument(help="Folder, glob, or .jsonl/.csv manifest.")],
    config: ConfigOpt = None,
) -> None:
    """Add images or texts to the store (idempotent)."""
    from engine.ingest import ingest as run_ingest
    from engine.store import Store

    settings = _settings(config)
    store = Store(settings.resolved_database_url)
    try:
        report = run_ingest(store, source, settings.resolved_data_roots)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"ingested {report.added} new, {report.existing} already present, "
        f"{len(report.errors)} errors"
    )
    for where, message in report.errors[:20]:
        console.print(f"  [yellow]{where}[/]: {message}")


def top(
    limit: Annotated[int, typer.Option(min=1)] = 15,
    min_score: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.25,
    why: Annotated[
        bool, typer.Option("--why", help="Explain each rank: uncertainty, top regions, classes.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Print the queue's top items with their suggestions (and, with --why, the reasons)."""
    from engine.review.ranking import current_policy
    from engine.review.report import top_table
    from engine.store import Store

    settings = _settings(config)
    store = Store(settings.resolved_database_url)
    policy = current_policy(store, settings.rank_policy) if why else None
    console.print(top_table(store, limit=limit, min_score=min_score, policy=policy))


def export_labels(
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="coco, yolo, labelstudio, ndjson, conll, classes, imagefolder"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    include_suggestions: Annotated[
        bool, typer.Option(help="Also export pending suggestions, not only accepted labels.")
    ] = False,
    min_score: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.0,
    labeling_config: Annotated[
        Path | None, typer.Option(help="Label Studio XML (labelstudio format only).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Export accepted labels as COCO, YOLO, Label Studio tasks, NDJSON, CoNLL, whole-item
    classes (CSV + JSON) or an image folder per class."""
    from engine.formats.export import export
    from engine.store import Store

    settings = _settings(config)
    try:
        xml = labeling_config.read_text(encoding="utf-8") if labeling_config else None
        report = export(
            Store(settings.resolved_database_url),
            fmt,
            out,
            include_suggestions=include_suggestions,
            min_score=min_score,
            labeling_config=xml,
        )
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"{report.fmt}: {report.n_items} items, {report.n_labels} labels")
    for path in report.files:
        console.print(f"  wrote {path}")
    if report.skipped:
        console.print(f"skipped {len(report.skipped)}:")
        for reason in report.skipped[:20]:
            console.print(f"  [yellow]{reason}[/]")
