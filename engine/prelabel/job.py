"""The pre-label job: plan, run on Ray Data, write to the store, resume after a crash.

A job is a store record (``engine.jobs``) holding the resolved job config and
a snapshot of the model spec, so a job created by one process (the server)
runs identically in another (``python -m engine.cli prelabel --job-id ID``).

Resume and no-duplicate rules:

- An item that already has a prediction of the job's model version is skipped
  (counted in ``skipped``), whichever job wrote it.
- The driver writes each batch of predictions in one transaction; the store
  ignores an (item, model version) pair it already has, so a crash at any
  point loses at most the batches not yet committed, and a rerun redoes
  exactly those.
- A bad item (unreadable, corrupt, too large, a model error) is recorded once
  per job in ``job_errors`` and counted in ``failed``; the job goes on. A rerun
  tries it again.
- ``limit`` caps how many items one job predicts or fails, counting what it
  predicted in earlier runs, so resuming a limited job does not widen it.

Counters describe the latest run: ``total = skipped + items to do`` and at the
end ``done + failed + skipped == total``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select

from engine import schema as t
from engine.config import ConfigError, ModelSpec, Settings, format_validation_error, get_model_spec
from engine.jobs import JobRecord, add_progress, create_job, get_job, record_errors, update_job
from engine.models.registry import model_version
from engine.prelabel.codec import decode_prediction
from engine.prelabel.config import PrelabelConfig, config_for_job
from engine.prelabel.stages import Batch, describe_error
from engine.store import Store
from engine.types import Prediction

log = logging.getLogger(__name__)

JOB_KIND = "prelabel"
DETECTOR_FAMILIES = frozenset({"yolo"})  # predict(items, images) with no prompt
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
ProgressCallback = Callable[[JobRecord], None]


def create_prelabel_job(
    store: Store,
    settings: Settings,
    *,
    model_name: str,
    limit: int | None = None,
    job_config_path: Path | None = None,
) -> JobRecord:
    """Record a pending pre-label job with its resolved config and model version."""
    spec = get_model_spec(settings, model_name)
    if spec.family not in DETECTOR_FAMILIES:
        raise ConfigError(
            f"model {spec.name!r} is a {spec.family!r} model; a pre-label job runs an image "
            f"model that needs no prompt: one of the families {sorted(DETECTOR_FAMILIES)}"
        )
    config = config_for_job(settings, job_config_path, limit=limit)
    config.model_batch_size(spec)  # a bad spec batch_size fails now, not in a worker
    stored = {
        "prelabel": config.model_dump(mode="json"),
        "model_spec": spec.model_dump(mode="json"),
    }
    return create_job(
        store, JOB_KIND, stored, model_name=spec.name, model_version=model_version(spec)
    )


def job_inputs(job: JobRecord) -> tuple[PrelabelConfig, ModelSpec]:
    """The job's stored config and model spec, validated again."""
    if job.kind != JOB_KIND:
        raise ValueError(f"job {job.job_id!r} is a {job.kind!r} job, not a {JOB_KIND!r} job")
    source = f"job {job.job_id} config"
    try:
        config = PrelabelConfig.model_validate(job.config.get("prelabel", {}))
        spec = ModelSpec.model_validate(job.config.get("model_spec"))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc
    if model_version(spec) != job.model_version:
        raise ConfigError(
            f"{source}: model spec gives version {model_version(spec)!r}, "
            f"but the job records {job.model_version!r}"
        )
    return config, spec


def predicted_by_job(store: Store, job_id: str, version: str) -> int:
    """How many predictions of ``version`` the job has written (in any run)."""
    query = (
        select(func.count())
        .select_from(t.predictions)
        .where(t.predictions.c.job_id == job_id, t.predictions.c.model_version == version)
    )
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def plan_items(
    store: Store, job_id: str, version: str, limit: int | None
) -> tuple[list[dict[str, str]], int]:
    """``(rows to do as {item_id, uri}, items skipped)`` for a run of the job."""
    predicted = store.predicted_item_ids(version)
    budget = None if limit is None else max(limit - predicted_by_job(store, job_id, version), 0)
    todo: list[dict[str, str]] = []
    skipped = 0
    for item in store.iter_items(kind="image"):
        if item.item_id in predicted:
            skipped += 1
        elif budget is not None and len(todo) >= budget:
            break
        elif item.uri is not None:
            todo.append({"item_id": item.item_id, "uri": item.uri})
    return todo, skipped


def run_prelabel_job(
    store: Store,
    settings: Settings,
    job_id: str,
    *,
    on_progress: ProgressCallback | None = None,
) -> JobRecord:
    """Run (or resume) a pre-label job to the end; blocking.

    Returns the final record: ``succeeded``, or ``failed`` with a message (the
    error is logged, not raised). Ctrl-C marks the job ``cancelled`` and
    re-raises. Safe to call again for the same job: it continues.
    """
    job = get_job(store, job_id)
    notify = _notifier(store, job_id, on_progress)
    try:
        config, spec = job_inputs(job)
        version = str(job.model_version)
        todo, skipped = plan_items(store, job_id, version, config.limit)
        update_job(
            store,
            job_id,
            state="running",
            total=len(todo) + skipped,
            skipped=skipped,
            done=0,
            failed=0,
            message=None,
        )
        notify()
        if todo:
            _execute(store, settings, job_id, todo, config, spec, notify)
    except BaseException as exc:
        cancelled = not isinstance(exc, Exception)
        if not cancelled:
            log.exception("pre-label job %s failed", job_id)
        update_job(
            store,
            job_id,
            state="cancelled" if cancelled else "failed",
            message=failure_message(exc),
        )
        notify()
        if cancelled:
            raise
        return get_job(store, job_id)
    final = get_job(store, job_id)
    update_job(store, job_id, state="succeeded", message=_summary(final))
    notify()
    return get_job(store, job_id)


def failure_message(exc: BaseException) -> str:
    """One readable message: Ray wraps worker errors with colour codes; drop them."""
    return _ANSI_ESCAPE.sub("", describe_error(exc)).strip()[:4000]


def _summary(job: JobRecord) -> str:
    return f"{job.done} predicted, {job.failed} failed, {job.skipped} skipped"


def _notifier(
    store: Store, job_id: str, on_progress: ProgressCallback | None
) -> Callable[[], None]:
    def notify() -> None:
        if on_progress is not None:
            on_progress(get_job(store, job_id))

    return notify


def _execute(
    store: Store,
    settings: Settings,
    job_id: str,
    todo: list[dict[str, str]],
    config: PrelabelConfig,
    spec: ModelSpec,
    notify: Callable[[], None],
) -> None:
    from engine.prelabel.pipeline import build_dataset
    from engine.prelabel.runtime import ray_session

    with ray_session(settings) as session:
        dataset = build_dataset(todo, settings, config, spec, session)
        # No driver-side prefetch: with it, each batch reaches the writer only after
        # the next ones arrived, so more finished work would be at risk in a crash.
        for batch in dataset.iter_batches(
            batch_size=config.write_batch_size, batch_format="numpy", prefetch_batches=0
        ):
            write_batch(store, job_id, batch)
            notify()


def write_batch(store: Store, job_id: str, batch: Batch) -> tuple[int, int]:
    """Store one batch of predict-stage rows; returns ``(written, failed)``."""
    predictions: list[Prediction] = []
    scores: list[float] = []
    errors: list[tuple[str, str]] = []
    for row in _rows(batch):
        if row["error"]:
            errors.append((str(row["item_id"]), str(row["error"])))
            continue
        predictions.append(decode_prediction(row["meta"], row["probs"], row["embedding"]))
        scores.append(float(row["score"]))
    written = store.save_predictions(predictions, scores, job_id) if predictions else 0
    if errors:
        record_errors(store, job_id, errors)
    add_progress(store, job_id, done=written, failed=len(errors))
    if written < len(predictions):  # another writer got there first: nothing to redo
        job = get_job(store, job_id)
        update_job(store, job_id, skipped=job.skipped + len(predictions) - written)
    return written, len(errors)


def _rows(batch: Batch) -> list[dict[str, Any]]:
    columns = list(batch)
    return [dict(zip(columns, values, strict=True)) for values in zip(*batch.values(), strict=True)]
