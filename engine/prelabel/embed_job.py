"""The embed job: pre-encode a backlog's image embeddings into the shared directory.

A job record (``engine.store.jobs``, kind ``embed``) holds the resolved config, a
snapshot of the model spec and the embedding directory, so a job created in
one process runs identically in another. What it covers, fixed per run:

- ``top=N``: the N best-ranked items of the labeling queue (unlabeled,
  scored, leased or not), ranked when the run starts;
- otherwise every image item, by ``item_id``;
- ``limit=N`` keeps only the first N of that selection, so resuming a limited
  job does not widen it.

Resume: an item whose embedding file already exists (written by an earlier
run, another job, or a server) is skipped. A bad item (unreadable, corrupt,
too large, an encoder error) is recorded once per job in ``job_errors``,
counted in ``failed``, and the job goes on; a rerun tries it again. Counters
describe the latest run: at the end ``done + failed + skipped == total``.
Embeddings are written by the actors as they go, so a crash loses only the
batches in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from engine.config import ConfigError, ModelSpec, Settings, format_validation_error, get_model_spec
from engine.models.versioning import spec_version
from engine.prelabel.codec import Batch
from engine.prelabel.config import EmbedConfig
from engine.prelabel.runner import ProgressCallback, run_item_job
from engine.segment.embeddings import (
    embedding_dir,
    embedding_dir_budget,
    embedding_file,
    item_image_key,
    warn_if_over_budget,
)
from engine.store import ImageRow, JobRecord, Store

log = logging.getLogger(__name__)

JOB_KIND = "embed"


def create_embed_job(
    store: Store,
    settings: Settings,
    *,
    model_name: str | None = None,
    top: int | None = None,
    limit: int | None = None,
    **options: object,
) -> JobRecord:
    """Record a pending embed job for ``model_name`` (default: ``interactive_model``).

    ``options``: further ``EmbedConfig`` fields (``batch_size``, ``num_actors``...).
    """
    spec = get_model_spec(settings, model_name or settings.interactive_model)
    if spec.family != "sam":
        raise ConfigError(
            f"model {spec.name!r} is a {spec.family!r} model; an embed job needs a "
            "segmenter (family 'sam')"
        )
    try:
        config = EmbedConfig.model_validate({"top": top, "limit": limit, **options})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "embed job config")) from exc
    stored = {
        "embed": config.model_dump(mode="json"),
        "model_spec": spec.model_dump(mode="json"),
        "embedding_dir": str(embedding_dir(settings, spec)),
    }
    return store.create_job(
        JOB_KIND, stored, model_name=spec.name, model_version=spec_version(spec)
    )


def job_inputs(job: JobRecord) -> tuple[EmbedConfig, ModelSpec, Path]:
    """The job's stored config, model spec and embedding directory, validated again."""
    if job.kind != JOB_KIND:
        raise ValueError(f"job {job.job_id!r} is a {job.kind!r} job, not an {JOB_KIND!r} job")
    source = f"job {job.job_id} config"
    try:
        config = EmbedConfig.model_validate(job.config.get("embed", {}))
        spec = ModelSpec.model_validate(job.config.get("model_spec"))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc
    if spec_version(spec) != job.model_version:
        raise ConfigError(
            f"{source}: model spec gives version {spec_version(spec)!r}, "
            f"but the job records {job.model_version!r}"
        )
    disk_dir = job.config.get("embedding_dir")
    if not isinstance(disk_dir, str) or not disk_dir:
        raise ConfigError(f"{source}: no embedding_dir recorded")
    return config, spec, Path(disk_dir)


def selected_images(store: Store, config: EmbedConfig) -> list[ImageRow]:
    """The run's selection: the queue's top N or all images, cut to ``limit``."""
    if config.top is not None:
        count = config.top if config.limit is None else min(config.top, config.limit)
        return store.queued_images(count, free_only=False)
    return store.all_images(config.limit)


def plan_items(
    store: Store, config: EmbedConfig, disk_dir: Path, version: str
) -> tuple[list[dict[str, str]], int]:
    """``(rows to encode as {item_id, uri, key}, items skipped: already on disk)``."""
    todo: list[dict[str, str]] = []
    skipped = 0
    for row in selected_images(store, config):
        key = item_image_key(row.item_id, row.content_sha256)
        if embedding_file(disk_dir, key, version).is_file():
            skipped += 1
        else:
            todo.append({"item_id": row.item_id, "uri": row.uri, "key": key})
    return todo, skipped


def run_embed_job(
    store: Store,
    settings: Settings,
    job_id: str,
    *,
    on_progress: ProgressCallback | None = None,
) -> JobRecord:
    """Run (or resume) an embed job to the end; blocking.

    Returns the final record: ``succeeded``, or ``failed`` with a message (the
    error is logged, not raised). Ctrl-C marks the job ``cancelled`` and
    re-raises. Safe to call again for the same job: it continues.
    """
    inputs: list[tuple[EmbedConfig, ModelSpec, Path]] = []

    def plan(job: JobRecord) -> tuple[list[dict[str, str]], int]:
        inputs.append(job_inputs(job))
        config, _spec, disk_dir = inputs[0]
        return plan_items(store, config, disk_dir, str(job.model_version))

    def execute(todo: list[dict[str, str]], notify: Callable[[], None]) -> None:
        _execute(store, settings, job_id, todo, inputs[0], notify)

    return run_item_job(
        store, job_id, plan=plan, execute=execute, done_word="encoded", on_progress=on_progress
    )


def _execute(
    store: Store,
    settings: Settings,
    job_id: str,
    todo: list[dict[str, str]],
    inputs: tuple[EmbedConfig, ModelSpec, Path],
    notify: Callable[[], None],
) -> None:
    from engine.prelabel.embed_pipeline import build_embed_dataset
    from engine.prelabel.runtime import ray_session

    config, spec, disk_dir = inputs
    budget_checked = embedding_dir_budget(settings) is None
    with ray_session(settings) as session:
        dataset = build_embed_dataset(todo, settings, config, spec, disk_dir, session)
        for batch in dataset.iter_batches(
            batch_size=config.write_batch_size, batch_format="numpy", prefetch_batches=0
        ):
            record_batch(store, job_id, batch)
            if not budget_checked:
                budget_checked = _check_budget(settings, todo, batch, disk_dir, spec)
            notify()


def _check_budget(
    settings: Settings, todo: list[dict[str, str]], batch: Batch, disk_dir: Path, spec: ModelSpec
) -> bool:
    """Warn once if the job covers more embeddings than the directory's bound holds;
    the size of one comes from a file this batch wrote. False: no file to measure yet."""
    keys = {row["item_id"]: row["key"] for row in todo}
    version = spec_version(spec)
    for item_id, error in zip(batch["item_id"], batch["error"], strict=True):
        if error:
            continue
        try:
            file_bytes = embedding_file(disk_dir, keys[str(item_id)], version).stat().st_size
        except (KeyError, OSError):
            continue  # evicted already (a tiny bound) or not this run's item
        warn_if_over_budget(embedding_dir_budget(settings), file_bytes, len(todo), disk_dir)
        return True
    return False


def record_batch(store: Store, job_id: str, batch: Batch) -> tuple[int, int]:
    """Count one batch of encoder rows; returns ``(encoded, failed)``."""
    errors = [
        (str(item_id), str(error))
        for item_id, error in zip(batch["item_id"], batch["error"], strict=True)
        if error
    ]
    if errors:
        store.record_job_errors(job_id, errors)
    encoded = len(batch["item_id"]) - len(errors)
    store.add_progress(job_id, done=encoded, failed=len(errors))
    return encoded, len(errors)
