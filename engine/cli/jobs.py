"""``labelengine prelabel|embed|train ner``: the long-running, resumable jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from engine.cli.common import ConfigOpt, _fail, _settings, console

train_app = typer.Typer(no_args_is_help=True, help="Train models from labeled data.")


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
    from engine.prelabel.progress import run_embed_with_progress

    settings = _settings(config)
    if ray_address:
        settings = settings.model_copy(update={"ray_address": ray_address})
    job = run_embed_with_progress(
        settings, model=model, top=top, limit=limit, job_id=job_id, console=console
    )
    if job.state != "succeeded":
        raise _fail(f"job {job.job_id} ended {job.state}: {job.message or ''}")


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
