"""``labelengine quality`` (consensus and gold items) and ``labelengine report quality``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from engine.cli.common import ConfigOpt, _fail, _settings, console

quality_app = typer.Typer(
    no_args_is_help=True, help="Consensus (overlap) and gold items, the reviewer queue."
)
report_app = typer.Typer(no_args_is_help=True, help="Reports: quality.")
batch_app = typer.Typer(
    no_args_is_help=True, help="Calibration batches: open one, see where people disagree, close."
)


def _store(config: Any) -> Any:
    from engine.store import Store

    return Store(_settings(config).resolved_database_url)


@quality_app.command("overlap")
def overlap(
    k: Annotated[int, typer.Option(min=2, help="Distinct people per item.")] = 3,
    fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of the unlabeled backlog.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the random draw.")] = 0,
    config: ConfigOpt = None,
) -> None:
    """Put a random share of the unlabeled backlog under consensus (k people each)."""
    from engine.quality import consensus

    store = _store(config)
    try:
        chosen = consensus.choose_overlap(store, k=k, fraction=fraction, seed=seed)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    finally:
        store.close()
    console.print(f"{len(chosen)} items now go to {k} people each")


@quality_app.command("gold")
def gold(
    item_id: Annotated[str, typer.Argument(help="The item to make gold.")],
    by: Annotated[str, typer.Option(help="Who vouches for the labels.")] = "admin",
    config: ConfigOpt = None,
) -> None:
    """Make an item gold with its reviewed labels as they stand."""
    from engine.quality import consensus
    from engine.store import NotFoundError

    store = _store(config)
    try:
        made = consensus.mark_gold(store, item_id, labels=None, by=by)
    except (ValueError, NotFoundError) as exc:
        raise _fail(str(exc)) from exc
    finally:
        store.close()
    console.print(f"{made.item_id} is gold with {len(made.final_labels)} label(s)")


@quality_app.command("gold-import")
def gold_import(
    path: Annotated[str, typer.Argument(help="A COCO, Label Studio or CoNLL file.")],
    fmt: Annotated[str, typer.Option("--format", help="coco, labelstudio or conll.")] = "coco",
    by: Annotated[str, typer.Option(help="Who vouches for the labels.")] = "admin",
    config: ConfigOpt = None,
) -> None:
    """Make the items a file labels gold, with the file's labels."""
    from engine.imports.gold import import_gold

    store = _store(config)
    try:
        done = import_gold(store, path, fmt, by=by)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    finally:
        store.close()
    for reason in done.skipped:
        console.print(f"[yellow]skipped[/] {reason}")
    console.print(f"{len(done.imported)} gold items imported, {len(done.skipped)} skipped")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@report_app.command("quality")
def report_quality(
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
    since: Annotated[datetime | None, typer.Option(help="Decisions from (UTC).")] = None,
    label: Annotated[str | None, typer.Option(help="One class only.")] = None,
    model_version: Annotated[str | None, typer.Option(help="One model version only.")] = None,
    person: Annotated[str | None, typer.Option(help="One person only.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Agreement (kappa), resolution, gold accuracy per person, model vs human."""
    from datetime import UTC

    from rich.table import Table

    from engine.quality.report import ReportFilter, quality_report

    start = None if since is None else (since if since.tzinfo else since.replace(tzinfo=UTC))
    store = _store(config)
    try:
        report = quality_report(store, ReportFilter(start, None, label, model_version, person))
    finally:
        store.close()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    agree = report["agreement"]
    console.print(
        f"agreement on {agree['items']} consensus items: Fleiss kappa "
        f"{_fmt(agree['fleiss_kappa'])} ({agree['verdict']}), Krippendorff alpha "
        f"{_fmt(agree['krippendorff_alpha'])}; resolution {report['resolution']}"
    )
    tables = [
        ("Agreement per class", agree["per_class"], ["label", "items", "fleiss_kappa", "verdict"]),
        (
            "People",
            report["people"],
            ["name", "decisions", "units", "gold_accuracy", "consensus_accuracy"],
        ),
        (
            "Model vs human",
            report["models"],
            ["model_version", "label", "judged", "acceptance_rate", "edit_rate", "rejection_rate"],
        ),
    ]
    for title, rows, columns in tables:
        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(_fmt(row.get(c)) for c in columns))
        console.print(table)
    attention = report["attention"]
    if attention["classes"] or attention["people"]:
        console.print(
            f"[bold yellow]needs attention[/] (below 0.6): classes {attention['classes']}, "
            f"people {attention['people']} - clarify the instructions before going on"
        )


@batch_app.command("calibration")
def batch_calibration(
    size: Annotated[int, typer.Option(min=1, help="Items in the batch.")] = 50,
    k: Annotated[
        int | None, typer.Option(min=2, help="People per item (default: every annotator).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the stratified draw.")] = 0,
    config: ConfigOpt = None,
) -> None:
    """Open a calibration batch: every annotator labels these items first."""
    from engine.quality.calibration import draw_calibration

    store = _store(config)
    try:
        drawn = draw_calibration(store, size=size, k=k, seed=seed)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    finally:
        store.close()
    console.print(
        f"{drawn.batch.batch_id}: {len(drawn.item_ids)} items ({drawn.method}) for "
        f"{drawn.k} people each; the queue serves only these until it is closed"
    )


@batch_app.command("report")
def batch_report(
    batch_id: Annotated[str, typer.Argument(help="e.g. calibration-1")],
    config: ConfigOpt = None,
) -> None:
    """The batch's agreement, its lowest-agreement items and classes first."""
    from engine.quality.calibration import calibration_report
    from engine.store import NotFoundError

    store = _store(config)
    try:
        report = calibration_report(store, batch_id)
    except NotFoundError as exc:
        raise _fail(str(exc)) from exc
    finally:
        store.close()
    print(json.dumps(report, indent=2))


@batch_app.command("close")
def batch_close(
    batch_id: Annotated[str, typer.Argument(help="e.g. calibration-1")],
    by: Annotated[str, typer.Option(help="The reviewer closing it.")] = "admin",
    config: ConfigOpt = None,
) -> None:
    """Close a calibration batch: regular work starts."""
    from engine.quality.calibration import close_calibration
    from engine.store import NotFoundError

    store = _store(config)
    try:
        batch = close_calibration(store, batch_id, by=by)
    except (ValueError, NotFoundError) as exc:
        raise _fail(str(exc)) from exc
    finally:
        store.close()
    console.print(f"{batch.batch_id} closed by {batch.closed_by}")
