"""The pre-label job: plan, run on Ray Data, write to the store, resume after a crash.

A job is a store record (``engine.store.jobs``) holding the resolved job config and
a snapshot of the model spec(s) and versions, so a job created by one process
(the server) runs identically in another (``python -m engine.cli prelabel
--job-id ID``). What it runs (a detector on images, optionally chained with a
segmenter; a tagger on texts) is planned in ``engine.prelabel.plan``.

Resume and no-duplicate rules:

- An item that already has a prediction of the job's model version is skipped
  (counted in ``skipped``), whichever job wrote it. A chained job's version
  names both models (``<detector>+<segmenter>-<mask settings>``), so a
  detector-only prediction never counts as done for it, nor the reverse.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.config import ConfigError, ModelSpec, Settings, format_validation_error, get_model_spec
from engine.prelabel.codec import Batch, decode_prediction
from engine.prelabel.config import PrelabelConfig, config_for_job
from engine.prelabel.plan import (
    ModelPlan,
    check_segmenter,
    check_stored_version,
    item_kind,
    plan_items,
    resolve_version,
)
from engine.prelabel.runner import ProgressCallback, failure_message, run_item_job
from engine.review.ranking import current_policy, order_head
from engine.review.scoring import DEFAULT_POLICY, queue_score
from engine.sampling.policy import RankPolicy, policy_from
from engine.store import JobRecord, Store
from engine.types import Prediction

log = logging.getLogger(__name__)

JOB_KIND = "prelabel"
__all__ = [
    "JOB_KIND",
    "JobInputs",
    "create_prelabel_job",
    "failure_message",
    "job_inputs",
    "plan_items",
    "run_prelabel_job",
    "write_batch",
]


@dataclass(frozen=True)
class JobInputs:
    """A job's stored config and model plan, validated again."""

    config: PrelabelConfig
    models: ModelPlan

    @property
    def spec(self) -> ModelSpec:
        return self.models.spec


def create_prelabel_job(
    store: Store,
    settings: Settings,
    *,
    model_name: str,
    segmenter_name: str | None = None,
    limit: int | None = None,
    job_config_path: Path | None = None,
) -> JobRecord:
    """Record a pending pre-label job with its resolved config, specs and versions.

    ``model_name``: a detector (image items) or a tagger (text items);
    ``segmenter_name``: a segmenter that turns the detector's boxes into masks.
    """
    spec = get_model_spec(settings, model_name)
    kind = item_kind(spec)
    segmenter = None if segmenter_name is None else get_model_spec(settings, segmenter_name)
    if segmenter is not None:
        check_segmenter(spec, segmenter)
    config = config_for_job(settings, job_config_path, limit=limit)
    spec = config.spec_with_tta(spec)  # the job's tta is the detector's params.tta
    config.model_batch_size(spec)  # a bad spec batch_size fails now, not in a worker
    models_dir = settings.resolved_models_dir
    plan = ModelPlan(
        spec=spec,
        kind=kind,
        version=resolve_version(spec, models_dir),
        segmenter=segmenter,
        segmenter_version=None if segmenter is None else resolve_version(segmenter, models_dir),
        mask_min_box_score=config.mask_min_box_score,
        mask_multimask=config.mask_multimask,
    )
    stored = {
        "prelabel": config.model_dump(mode="json"),
        "model_spec": spec.model_dump(mode="json"),
        "kind": kind,
        "model_version_own": plan.version,
        "segmenter_spec": None if segmenter is None else segmenter.model_dump(mode="json"),
        "segmenter_version": plan.segmenter_version,
    }
    return store.create_job(
        JOB_KIND, stored, model_name=plan.job_model_name, model_version=plan.job_version
    )


def job_inputs(job: JobRecord) -> JobInputs:
    """The job's stored config and model plan, validated again.

    Jobs recorded before chaining and text existed (no ``kind`` / versions
    stored) read as a spec-versioned model alone; before executors existed, as
    a Ray job.
    """
    if job.kind != JOB_KIND:
        raise ValueError(f"job {job.job_id!r} is a {job.kind!r} job, not a {JOB_KIND!r} job")
    source = f"job {job.job_id} config"
    stored = job.config
    recorded = dict(stored.get("prelabel", {}))
    recorded.setdefault("executor", "ray")  # recorded before executors: it ran on Ray
    try:
        config = PrelabelConfig.model_validate(recorded)
        spec = ModelSpec.model_validate(stored.get("model_spec"))
        raw_segmenter = stored.get("segmenter_spec")
        segmenter = None if raw_segmenter is None else ModelSpec.model_validate(raw_segmenter)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc
    own = str(stored.get("model_version_own") or job.model_version)
    check_stored_version(spec, own, source)
    seg_version = stored.get("segmenter_version")
    if segmenter is not None:
        check_stored_version(segmenter, str(seg_version), source)
    plan = ModelPlan(
        spec=spec,
        kind=str(stored.get("kind") or item_kind(spec)),
        version=own,
        segmenter=segmenter,
        segmenter_version=None if seg_version is None else str(seg_version),
        mask_min_box_score=config.mask_min_box_score,
        mask_multimask=config.mask_multimask,
    )
    if plan.job_version != job.model_version:
        raise ConfigError(
            f"{source}: the stored models give version {plan.job_version!r}, "
            f"but the job records {job.model_version!r}"
        )
    return JobInputs(config, plan)


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
    inputs: list[JobInputs] = []

    def plan(job: JobRecord) -> tuple[list[dict[str, Any]], int]:
        inputs.append(job_inputs(job))
        config, models = inputs[0].config, inputs[0].models
        return plan_items(store, job_id, str(job.model_version), config.limit, models.kind)

    def execute(todo: list[dict[str, Any]], notify: Callable[[], None]) -> None:
        _execute(store, settings, job_id, todo, inputs[0].config, inputs[0].models, notify)

    return run_item_job(
        store, job_id, plan=plan, execute=execute, done_word="predicted", on_progress=on_progress
    )


def _execute(
    store: Store,
    settings: Settings,
    job_id: str,
    todo: list[dict[str, Any]],
    config: PrelabelConfig,
    models: ModelPlan,
    notify: Callable[[], None],
) -> None:
    policy = job_policy(store, settings, config)
    if pick_executor(config, settings, len(todo)) == "local":
        from engine.prelabel.local import run_in_process

        log.info("pre-label job %s: %d items in this process (no Ray)", job_id, len(todo))

        def write(batch: Batch) -> None:
            write_batch(store, job_id, batch, policy=policy, kind=models.kind)
            notify()

        run_in_process(todo, settings, config, models, write)
        order_head(store, policy)
        return
    from engine.prelabel.pipeline import build_dataset
    from engine.prelabel.runtime import ray_session

    with ray_session(settings) as session:
        dataset = build_dataset(todo, settings, config, models, session)
        # No driver-side prefetch: with it, each batch reaches the writer only after
        # the next ones arrived, so more finished work would be at risk in a crash.
        for batch in dataset.iter_batches(
            batch_size=config.write_batch_size, batch_format="numpy", prefetch_batches=0
        ):
            write_batch(store, job_id, batch, policy=policy, kind=models.kind)
            notify()
    order_head(store, policy)


def job_policy(store: Store, settings: Settings, config: PrelabelConfig) -> RankPolicy:
    """The job's ``rank_policy``, else the queue's current one, else the settings'."""
    if config.rank_policy is not None:
        return policy_from(config.rank_policy)
    return current_policy(store, settings.rank_policy)


def pick_executor(config: PrelabelConfig, settings: Settings, n_items: int) -> str:
    """``local`` or ``ray`` (see ``PrelabelConfig.executor``). A configured cluster
    (other than the engine's own local node) always gets the work: it may be
    where the GPUs are."""
    from engine.prelabel.runtime import cluster_address, local_head_address

    if config.executor != "auto":
        return config.executor
    remote = cluster_address(settings) is not None and local_head_address(settings) is None
    return "local" if not remote and n_items <= config.local_max_items else "ray"


def write_batch(
    store: Store,
    job_id: str,
    batch: Batch,
    *,
    policy: RankPolicy | None = None,
    kind: str = "image",
) -> tuple[int, int]:
    """Store one batch of predict-stage rows; returns ``(written, failed)``.

    The stage scored each prediction under the default policy; another
    ``policy`` scores it again here (cheap: no model, the prediction in hand)."""
    predictions: list[Prediction] = []
    scores: list[float] = []
    errors: list[tuple[str, str]] = []
    for row in _rows(batch):
        if row["error"]:
            errors.append((str(row["item_id"]), str(row["error"])))
            continue
        prediction = decode_prediction(row["meta"], row["probs"], row["extras"])
        predictions.append(prediction)
        default = policy is None or policy == DEFAULT_POLICY
        scores.append(float(row["score"]) if default else queue_score(prediction, kind, policy))
    written = store.save_predictions(predictions, scores, job_id) if predictions else 0
    if errors:
        store.record_job_errors(job_id, errors)
    store.add_progress(job_id, done=written, failed=len(errors))
    if written < len(predictions):  # another writer got there first: nothing to redo
        job = store.get_job(job_id)
        store.update_job(job_id, skipped=job.skipped + len(predictions) - written)
    return written, len(errors)


def _rows(batch: Batch) -> list[dict[str, Any]]:
    columns = list(batch)
    return [dict(zip(columns, values, strict=True)) for values in zip(*batch.values(), strict=True)]
