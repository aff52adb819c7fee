"""Label Studio's webhook: annotations become feedback on our suggestions; training is queued.

Payloads (Label Studio 1.23, ``POST {backend}/webhook``):

- ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED``: ``{"action", "annotation": {"id",
  "result": [...], "task": <task id>, "completed_by", "updated_at", "was_cancelled",
  "parent_prediction", "prediction"}, "task": {"id", "data"}, "project": {"id",
  "label_config"}}``; ``ANNOTATIONS_CREATED`` carries lists under ``annotation`` and ``task``.
- ``ANNOTATIONS_DELETED`` (and ``ANNOTATION_DELETED``): ``{"annotations": [{"id"}], "project"}``.
- ``START_TRAINING``: ``{"action", "project": {"id", "label_config", ...}}``.
- anything else is ignored.

Each annotation becomes decisions on the suggestions it was shown, as
``engine.labelstudio.annotation_feedback`` describes (what is accepted, edited,
rejected or not judged; client keys, replays and superseded versions).
``ANNOTATIONS_DELETED`` withdraws everything an annotation recorded.

``START_TRAINING`` picks the trainer from ``project.label_config`` (``"ner"`` for a
project with ``<Labels>`` on text; none yet for image or text-classification
projects) and asks the caller's ``start_training`` to queue it: this package
does not import ``engine.training``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from engine.labelstudio.annotation_feedback import annotation_prefix, apply_annotation, int_id
from engine.labelstudio.config import LabelingConfig, parse_labeling_config
from engine.labelstudio.webhook_result import WebhookResult
from engine.store import Store

__all__ = ["StartTraining", "WebhookResult", "annotation_prefix", "handle_webhook"]

FEEDBACK_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED"})
DELETE_ACTIONS = frozenset({"ANNOTATIONS_DELETED", "ANNOTATION_DELETED"})
TRAIN_ACTION = "START_TRAINING"
NER_TRAINER = "ner"
StartTraining = Callable[[str], str]
"""``start_training(trainer)``: create the job record of ``trainer`` (e.g. ``"ner"``),
launch its worker and return the job id at once."""


def handle_webhook(store: Store, payload: Any, *, start_training: StartTraining) -> WebhookResult:
    """Apply one Label Studio webhook body (see the module docstring).

    ``start_training(trainer)`` queues a training job and starts its worker; it must
    return the job id at once. Raises ``ValueError`` for a body that is not a webhook.
    """
    if not isinstance(payload, Mapping):
        raise ValueError("webhook body must be a JSON object with an 'action' field")
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        raise ValueError(
            "webhook body has no 'action' (Label Studio sends e.g. ANNOTATION_CREATED)"
        )
    out = WebhookResult(action)
    if action in FEEDBACK_ACTIONS:
        config = _config(payload.get("project"), out)
        for annotation, task in _annotations(payload):
            apply_annotation(store, annotation, task, config, out)
        if not out.items:
            out.status = "skipped"
    elif action in DELETE_ACTIONS:
        for annotation_id in _deleted_ids(payload):
            out.withdrawn += store.withdraw_feedback(annotation_prefix(annotation_id))
    elif action == TRAIN_ACTION:
        _queue_training(payload.get("project"), start_training, out)
    else:
        out.status = "ignored"
    return out


# -- payload ------------------------------------------------------------------


def _config(project: Any, out: WebhookResult) -> LabelingConfig | None:
    xml = project.get("label_config") if isinstance(project, Mapping) else None
    if not xml:
        return None
    try:
        return parse_labeling_config(str(xml))
    except ValueError as exc:
        out.reasons.append(f"project.label_config not used: {exc}")
        return None


def _annotations(
    payload: Mapping[str, Any],
) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    annotations, tasks = payload.get("annotation"), payload.get("task")
    if isinstance(annotations, Mapping):
        annotations, tasks = [annotations], [tasks] if isinstance(tasks, Mapping) else []
    if not isinstance(annotations, list) or not annotations:
        raise ValueError(f"{payload['action']} needs an 'annotation' object")
    by_id = {t.get("id"): t for t in tasks or [] if isinstance(t, Mapping)}
    for annotation in annotations:
        if not isinstance(annotation, Mapping):
            raise ValueError("each annotation must be a JSON object")
        task = annotation.get("task")
        if isinstance(task, Mapping):
            yield annotation, task
        else:
            yield annotation, by_id.get(task) or {"id": task}


def _deleted_ids(payload: Mapping[str, Any]) -> list[int]:
    found = payload.get("annotations", payload.get("annotation", payload.get("id")))
    entries = found if isinstance(found, list) else [found]
    ids = [e.get("id") if isinstance(e, Mapping) else e for e in entries]
    return [int_id(i, "deleted annotation id") for i in ids]


# -- training -------------------------------------------------------------------


def _queue_training(project: Any, start_training: StartTraining, out: WebhookResult) -> None:
    out.status = "skipped"
    xml = project.get("label_config") if isinstance(project, Mapping) else None
    if not xml:
        out.reasons.append("START_TRAINING without project.label_config: no way to pick a trainer")
        return
    try:
        config = parse_labeling_config(str(xml))
    except ValueError as exc:
        out.reasons.append(f"project.label_config: {exc}")
        return
    if not config.controls_of("labels"):
        kind = "image" if config.object_for("image") is not None else "text classification"
        out.reasons.append(f"no trainer for {kind} projects yet")
        return
    out.status, out.job_id = "queued", start_training(NER_TRAINER)
