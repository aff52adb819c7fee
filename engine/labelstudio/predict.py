"""The batch path of Label Studio's ``/predict``: tasks -> stored predictions -> regions.

Each task becomes a store item (``engine.labelstudio.tasks``). An item that
already has a prediction of the current model version (from a pre-label job
or an earlier call) is served from the store; the others run through the model
in batches of ``BATCH_SIZE`` and are saved first, so every region id is
``s<suggestion_id>`` and Label Studio's later annotations link back to it.
Suggestions under ``DISPLAY_THRESHOLD`` (the queue's display threshold) or
rejected by feedback are left out. A task that fails at any step gets
``failed(version)``; the batch goes on.

With a ``segmenter`` the model is the detector -> segmenter chain
(``ModelHolder.chain``): each item's embedding is keyed by its content hash,
as ``engine.segment.service`` keys it, so the editor's clicks on a task
reuse the embedding computed here. A chained mask whose class maps to no
``BrushLabels`` / ``PolygonLabels`` control is left out (its box already
answers for it as a rectangle); boxes whose class maps to no
``RectangleLabels`` are skipped as any unmapped class is.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from engine.labelstudio.config import LabelingConfig, ObjectTag
from engine.labelstudio.media import LabelStudioAccess, MediaFetcher
from engine.labelstudio.models import CLASSIFIER, ModelHolder
from engine.labelstudio.protocol import LsPredictionOut, LsTaskIn
from engine.labelstudio.results import to_ls_prediction
from engine.labelstudio.tasks import TaskItem, load_task_item
from engine.review.scoring import DISPLAY_THRESHOLD, queue_score
from engine.sampling.policy import RankPolicy
from engine.store import Store
from engine.types import Mask, Prediction, Suggestion

if TYPE_CHECKING:
    from engine.models.sam.segmenter import SamSegmenter

log = logging.getLogger(__name__)

FAILED_SUFFIX = "+failed"
BATCH_SIZE = 8


def failed(version: str) -> LsPredictionOut:
    """A failed task's answer: no regions, score 0, version ``<version>+failed``.

    The distinct version keeps the task eligible for Label Studio's next
    "retrieve predictions" (it skips tasks holding the current version).
    """
    return LsPredictionOut(result=[], score=0.0, model_version=version + FAILED_SUFFIX)


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
    *,
    segmenter: SamSegmenter | None = None,
    model: str | None = None,
    policy: RankPolicy | None = None,
) -> list[LsPredictionOut]:
    """Exactly one prediction per task, in order (see the module doc).

    ``segmenter``: run the detector chained with it (``version`` must be the chain's).
    ``model``: the ``ModelHolder`` slot to run (default ``kind``; ``classifier`` for
    image projects labeled with ``Choices``). ``policy``: how new predictions are
    scored for the queue (the queue's current policy; default: the defaults).
    """
    _predict_missing(
        store,
        models,
        kind,
        version,
        loaded,
        segmenter,
        model or kind,
        policy or RankPolicy(),
        config,
    )
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
    segmenter: SamSegmenter | None,
    slot: str,
    policy: RankPolicy,
    config: LabelingConfig,
) -> None:
    todo: dict[str, TaskItem] = {}
    for entry in loaded:
        if entry is not None and store.prediction_score(entry.item.item_id, version) is None:
            todo.setdefault(entry.item.item_id, entry)
    pending = list(todo.values())
    if segmenter is not None:
        pending = [_keyed(store, entry) for entry in pending]
    for start in range(0, len(pending), BATCH_SIZE):
        batch = pending[start : start + BATCH_SIZE]
        for entry, outcome in _run(models, slot, batch, segmenter):
            if isinstance(outcome, Exception):
                log.warning("model failed on item %s: %s", entry.item.item_id, outcome)
                continue
            if slot == CLASSIFIER:
                outcome = with_choice_groups(outcome, config)
            store.save_predictions([outcome], [queue_score(outcome, kind, policy)])


def with_choice_groups(prediction: Prediction, config: LabelingConfig) -> Prediction:
    """The classifier's prediction with ``signals["class_groups"]``: each class's index
    among the first Choices control's labels (-1: maps to none), so the queue scores
    the project's choices, not the model's classes: a photo split 0.38 / 0.27 / 0.22
    over tabby, tiger cat and Egyptian cat is a sure "Cat", not an unsure image."""
    controls = config.controls_of("choices")
    if not controls or not prediction.class_names:
        return prediction
    control = controls[0]
    index = {label.value: i for i, label in enumerate(control.labels)}
    groups = np.array(
        [
            -1 if (label := control.label_for(name)) is None else index[label.value]
            for name in prediction.class_names
        ],
        dtype=np.int32,
    )
    return dataclasses.replace(prediction, signals={**prediction.signals, "class_groups": groups})


def _keyed(store: Store, entry: TaskItem) -> TaskItem:
    """The entry with its item's embedding key set as the interactive path computes it."""
    from engine.segment.embeddings import item_image_key

    item = entry.item
    key = item_image_key(item.item_id, store.content_sha256(item.item_id))
    keyed = dataclasses.replace(item, metadata={**item.metadata, "key": key})
    return dataclasses.replace(entry, item=keyed)


def _run(
    models: ModelHolder,
    kind: str,
    entries: Sequence[TaskItem],
    segmenter: SamSegmenter | None = None,
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
            kind, [e.item for e in ready], [e.model_input() for e in ready], segmenter=segmenter
        )
        return outcomes + list(zip(ready, predictions, strict=True))
    except Exception as exc:
        if len(ready) == 1:
            return [*outcomes, (ready[0], exc)]
    for entry in ready:
        outcomes.extend(_run(models, kind, [entry], segmenter))
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
    score = store.prediction_score(item_id, version)
    if score is None:  # the model failed on it (logged)
        return failed(version)
    try:
        every = store.suggestions_for(item_id, model_version=version)
        rejected = {r.position for r in every if r.status == "rejected"}
        records = [
            r
            for r in every
            if r.suggestion.score >= DISPLAY_THRESHOLD
            and r.status != "rejected"
            and r.suggestion.parent_index not in rejected  # a mask of a rejected box
            and _shown(r.suggestion, config)
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


def _shown(suggestion: Suggestion, config: LabelingConfig) -> bool:
    """False for a chained mask (it has a parent box) that no mask control can show."""
    if suggestion.parent_index is None or not isinstance(suggestion.region, Mask):
        return True
    controls = config.controls_of("brushlabels", "polygonlabels")
    return any(c.label_for(suggestion.label) is not None for c in controls)


def log_failure(task: LsTaskIn, project: str | None, exc: Exception) -> None:
    if isinstance(exc, ValueError | OSError | LookupError):
        log.warning("Label Studio task %s (project %s): %s", task.id, project, exc)
    else:
        log.error("Label Studio task %s (project %s) failed", task.id, project, exc_info=exc)
