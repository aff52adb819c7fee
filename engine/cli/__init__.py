"""The ``labelengine`` command line: models, ingest, prelabel, serve, demo.

Every command reads settings the same way (``--config`` YAML, then
``LABELENGINE_*`` environment) and prints errors as one readable line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from engine.config import REPO_CONFIG_DIR, ConfigError, Settings, load_settings, model_specs

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
models_app = typer.Typer(no_args_is_help=True, help="Weight files: list and pull.")
app.add_typer(models_app, name="models")
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


@app.command()
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


@app.command()
def prelabel(
    model: Annotated[
        str | None, typer.Option(help="Detector (images) or tagger (texts) from configs/models.")
    ] = None,
    segmenter: Annotated[
        str | None, typer.Option(help="Segmenter turning the detector's boxes into masks.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N items.")] = None,
    job_id: Annotated[str | None, typer.Option(help="Run (or resume) an existing job.")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Existing Ray cluster.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Pre-label the backlog with a model as a resumable Ray job.

    A detector labels images (--segmenter adds a mask per confident box);
    a tagger (hf-ner, spacy) labels texts.
    """
    from engine.prelabel.progress import run_with_progress

    settings = _settings(config)
    if ray_address:
        settings = settings.model_copy(update={"ray_address": ray_address})
    job = run_with_progress(
        settings,
        model=model or settings.default_detector,
        segmenter=segmenter,
        limit=limit,
        job_id=job_id,
        console=console,
    )
    if job.state != "succeeded":
        raise _fail(f"job {job.job_id} ended {job.state}: {job.message or ''}")


@app.command()
def embed(
    model: Annotated[
        str | None, typer.Option(help="Segmenter from configs/models (default: interactive).")
    ] = None,
    top: Annotated[
        int | None, typer.Option(min=1, help="Only the queue's top N items by score.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N items.")] = None,
    job_id: Annotated[str | None, typer.Option(help="Run (or resume) an existing job.")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Existing Ray cluster.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Pre-encode image embeddings for click-to-segment as a resumable Ray job.

    Writes into the shared embedding directory (embedding_cache_dir, default
    <data_dir>/embeddings) that the server reads; items already there are skipped.
    """
    from engine.prelabel.embed_progress import run_embed_with_progress

    settings = _settings(config)
    if ray_address:
        settings = settings.model_copy(update={"ray_address": ray_address})
    job = run_embed_with_progress(
        settings, model=model, top=top, limit=limit, job_id=job_id, console=console
    )
    if job.state != "succeeded":
        raise _fail(f"job {job.job_id} ended {job.state}: {job.message or ''}")


@app.command()
def top(
    limit: Annotated[int, typer.Option(min=1)] = 15,
    min_score: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.25,
    config: ConfigOpt = None,
) -> None:
    """Print the queue's top items with their suggestions."""
    from engine.review.report import top_table
    from engine.store import Store

    settings = _settings(config)
    console.print(
        top_table(Store(settings.resolved_database_url), limit=limit, min_score=min_score)
    )


train_app = typer.Typer(no_args_is_help=True, help="Train models from labeled data.")
app.add_typer(train_app, name="train")


@train_app.command("ner")
def train_ner(
    source: Annotated[str, typer.Option(help="conll2003 or store (reviewed spans)")] = "conll2003",
    epochs: Annotated[float, typer.Option(min=0.01)] = 1.0,
    max_train_sentences: Annotated[int | None, typer.Option(min=1)] = None,
    job_id: Annotated[
        str | None, typer.Option(help="Run an existing train-ner job (its own options).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Fine-tune the bundled MiniLM encoder for entities, as a job; prints F1 per type."""
    from engine.store import NotFoundError, Store
    from engine.training.ner import create_ner_training_job, run_ner_training_job

    settings = _settings(config)
    store = Store(settings.resolved_database_url)
    options = {"source": source, "epochs": epochs, "max_train_sentences": max_train_sentences}
    if job_id is None:
        try:
            job_id = create_ner_training_job(store, options).job_id
        except ValueError as exc:
            raise _fail(str(exc)) from exc
    console.print(f"training job {job_id}")
    try:
        job = run_ner_training_job(store, settings, job_id)
    except (NotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"job {job.job_id}: {job.state}: {job.message or ''}")
    if job.state != "succeeded":
        raise typer.Exit(code=1)


@app.command()
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


@app.command()
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


@app.command()
def serve(config: ConfigOpt = None) -> None:
    """Serve the HTTP API (uvicorn)."""
    from engine.serving.server import run_server

    settings = _settings(config)
    console.print(f"serving on http://{settings.host}:{settings.port}  token: {settings.token()}")
    run_server(settings)


@app.command()
def samples(
    folder: Annotated[Path, typer.Argument(help="Where to write the sample photos.")],
) -> None:
    """Write the bundled sample photos (skimage + ultralytics) into a folder."""
    from engine.cli.samples import write_samples

    paths = write_samples(folder)
    console.print(f"wrote {len(paths)} sample photos to {folder}")


@app.command()
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


@app.command()
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


@app.command("export")
def export_labels(
    fmt: Annotated[str, typer.Option("--format", help="coco, yolo, labelstudio, ndjson, conll")],
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
    """Export accepted labels as COCO, YOLO, Label Studio tasks, NDJSON or CoNLL."""
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


@app.command()
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


def main() -> None:
    try:
        app()
    except (ConfigError, PermissionError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)

