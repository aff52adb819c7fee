"""The batch path of Label Studio's ``/predict``: tasks -> stored predictions -> regions.

Each task becomes a store item (``engine.serving.ls_items``). An item that
already has a prediction of the current model version (from a pre-label job
or an earlier call) is served from the store; the others run through the model
in batches of ``BATCH_SIZE`` and are saved first, so every region id is
``s<suggestion_id>`` and Label Studio's later annotations link back to it.
Suggestions under ``DISPLAY_THRESHOLD`` (the queue's display threshold) or
rejected by feedback are left out. A task that fails at any step gets
``failed(version)``; the batch goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select

from engine import schema
from engine.formats.labelstudio import to_ls_prediction
from engine.formats.labelstudio_config import LabelingConfig, ObjectTag
from engine.models.text_uncertainty import text_item_score
from engine.prelabel.scoring import DISPLAY_THRESHOLD, item_score
from engine.serving.ls_items import TaskItem, load_task_item
from engine.serving.ls_models import ModelHolder
from engine.serving.ls_schemas import LsPredictionOut, LsTaskIn
from engine.serving.media import LabelStudioAccess, MediaFetcher
from engine.store import Store
from engine.types import Prediction

log = logging.getLogger(__name__)

FAILED_SUFFIX = "+failed"
BATCH_SIZE = 8


def failed(version: str) -> LsPredictionOut:
    """A failed task's answer: no regions, score 0, version ``<version>+failed``.

    The distinct version keeps the task eligible for Label Studio's next
    "retrieve predictions" (it skips tasks holding the current version).
    """
    return LsPredictionOut(result=[], score=0.0, model_version=version + FAILED_SUFFIX)


def stored_score(store: Store, item_id: str, model_version: str) -> float | None:
    """The score of the item's stored prediction of ``model_version``; ``None`` if none."""
    p = schema.predictions.c
    query = select(p.score).where(p.item_id == item_id, p.model_version == model_version)
    with store.engine.connect() as conn:
        score = conn.execute(query.limit(1)).scalar_one_or_none()
    return None if score is None else float(score)


def load_tasks(
    store: Store,
    fetcher: MediaFetcher,
    tasks: Sequence[LsTaskIn],
    target: ObjectTag,
    *,
    access: LabelStudioAccess | None,
    project: str | None,
    max_pixels: int,
) -> list[TaskItem | None]:
    """One ``TaskItem`` per task, ``None`` (logged) where the task's data cannot be had."""
    loaded: list[TaskItem | None] = []
    for task in tasks:
        try:
            entry: TaskItem | None = load_task_item(
                task,
                target,
                store=store,
                fetcher=fetcher,
                access=access,
                project=project,
                max_pixels=max_pixels,
            )
        except Exception as exc:
            log_failure(task, project, exc)
            entry = None
        loaded.append(entry)
    return loaded


def predict_tasks(
    store: Store,
    models: ModelHolder,
    kind: str,
    version: str,
    config: LabelingConfig,
    tasks: Sequence[LsTaskIn],
    loaded: Sequence[TaskItem | None],
) -> list[LsPredictionOut]:
    """Exactly one prediction per task, in order (see the module doc)."""
    _predict_missing(store, models, kind, version, loaded)
    return [
        _convert(store, task, entry, config, version)
        for task, entry in zip(tasks, loaded, strict=True)
    ]


def _predict_missing(
    store: Store,
    models: ModelHolder,
    kind: str,
    version: str,
    loaded: Sequence[TaskItem | None],
) -> None:
    todo: dict[str, TaskItem] = {}
    for entry in loaded:
        if entry is not None and stored_score(store, entry.item.item_id, version) is None:
            todo.setdefault(entry.item.item_id, entry)
    pending = list(todo.values())
    for start in range(0, len(pending), BATCH_SIZE):
        for entry, outcome in _run(models, kind, pending[start : start + BATCH_SIZE]):
            if isinstance(outcome, Exception):
                log.warning("model failed on item %s: %s", entry.item.item_id, outcome)
                continue
            score = item_score(outcome) if kind == "image" else text_item_score(outcome)
            store.save_predictions([outcome], [score])


def _run(
    models: ModelHolder, kind: str, entries: Sequence[TaskItem]
) -> list[tuple[TaskItem, Prediction | Exception]]:
    """Predictions for ``entries``; a failing batch is retried item by item."""
    outcomes: list[tuple[TaskItem, Prediction | Exception]] = []
    ready: list[TaskItem] = []
    for entry in entries:
        try:
            entry.model_input()  # decode here: a bad image fails alone
            ready.append(entry)
        except Exception as exc:
            outcomes.append((entry, exc))
    if not ready:
        return outcomes
    try:
        predictions = models.predict(
            kind, [e.item for e in ready], [e.model_input() for e in ready]
        )
        return outcomes + list(zip(ready, predictions, strict=True))
    except Exception as exc:
        if len(ready) == 1:
            return [*outcomes, (ready[0], exc)]
    for entry in ready:
        outcomes.extend(_run(models, kind, [entry]))
    return outcomes


def _convert(
    store: Store,
    task: LsTaskIn,
    entry: TaskItem | None,
    config: LabelingConfig,
    version: str,
) -> LsPredictionOut:
    if entry is None:
        return failed(version)
    item_id = entry.item.item_id
    score = stored_score(store, item_id, version)
    if score is None:  # the model failed on it (logged)
        return failed(version)
    try:
        records = [
            r
            for r in store.suggestions_for(
                item_id, model_version=version, min_score=DISPLAY_THRESHOLD
            )
            if r.status != "rejected"
        ]
        prediction = to_ls_prediction(
            [r.suggestion for r in records],
            config,
            model_version=version,
            item_score=score,
            image_size_px=entry.size_px,
            suggestion_ids=[r.suggestion_id for r in records],
            text=entry.text,
        )
    except Exception as exc:
        log_failure(task, None, exc)
        return failed(version)
    return LsPredictionOut.model_validate(prediction)


def log_failure(task: LsTaskIn, project: str | None, exc: Exception) -> None:
    if isinstance(exc, ValueError | OSError | LookupError):
        log.warning("Label Studio task %s (project %s): %s", task.id, project, exc)
    else:
        log.error("Label Studio task %s (project %s) failed", task.id, project, exc_info=exc)
