"""One Label Studio annotation -> decisions on our suggestions (``engine.review.decisions``).

An annotation judges the suggestions it was shown. Our predictions carry result
ids ``s<suggestion_id>`` (``engine.labelstudio.results.region_id``), so:

- the item is that of the named suggestions, else the task's ``data.item_id``,
  else the one stored item whose uri / text equals a task data value;
- a named suggestion whose label and geometry are unchanged (boxes within 0.5 px
  after percent -> pixels, spans exact, masks IoU >= 0.99; see
  ``engine.labelstudio.webhook_regions``) -> ``accept``; changed -> ``edit`` with
  what changed (the annotated region, and / or its label; the unchanged one is
  ``None``);
- a suggestion of the judged prediction missing from the annotation -> ``reject``;
  whole-item classes (``choices``) match by label; a suggestion Label Studio did
  not show (score under ``DISPLAY_THRESHOLD``, a class the config does not map)
  -> suggestion-level ``skip`` (counted ``unseen``), so it is not judged either way;
- a region drawn from scratch -> item-level ``edit`` with its label and region
  (counted ``unlinked``); a result that does not fit (offsets outside the text,
  unknown label) is counted ``invalid`` and the rest is still recorded;
- then an item-level ``accept`` (the annotator submitted the item); a cancelled
  annotation is only an item-level ``skip``.

Each decision is recorded and re-ranks the queue through
``engine.review.decisions.record_decision`` (as ``POST /feedback`` does).

Client keys are ``ls:a<annotation id>:v<content hash>:<part>``: a replay records
nothing new, and a new version of the annotation withdraws what the previous one
recorded (``Store.withdraw_feedback``); a payload older than the recorded version
is ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.ingest import content_id
from engine.labelstudio.annotations import AnnotatedRegion, suggestion_id_of
from engine.labelstudio.config import LabelingConfig
from engine.labelstudio.webhook_regions import (
    first_change,
    parse_results,
    same_geometry,
    same_label,
    was_shown,
)
from engine.labelstudio.webhook_result import WebhookResult
from engine.review.decisions import record_decision
from engine.store import NotFoundError, Store, SuggestionRecord
from engine.types import Feedback, FeedbackAction, Item, Region

# -- annotation fields ----------------------------------------------------------


def annotation_prefix(annotation_id: int) -> str:
    """The client-key prefix of everything a Label Studio annotation recorded."""
    return f"ls:a{annotation_id}:"


def int_id(value: Any, where: str) -> int:
    """A Label Studio id (an int, or digits); ``ValueError`` naming ``where`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ValueError(f"{where} must be an integer id, got {value!r}")
    return int(value)


def _timestamp(value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def _annotator(annotation: Mapping[str, Any]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, Mapping):
        who = who.get("email") or who.get("id")
    return f"labelstudio:{who}"[:128] if who not in (None, "") else "labelstudio"


def _version(annotation: Mapping[str, Any]) -> str:
    """A hash of what the annotation says (not when): same content, same client keys."""
    content = [annotation.get("result"), bool(annotation.get("was_cancelled"))]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()[:12]


# -- one annotation -------------------------------------------------------------


@dataclass
class _Decisions:
    """Feedback being built for one version of one annotation."""

    item: Item
    key_prefix: str
    annotator: str
    when: datetime
    feedback: list[Feedback] = field(default_factory=list)

    def add(
        self,
        action: FeedbackAction,
        part: str,
        suggestion: SuggestionRecord | None = None,
        *,
        label: str | None = None,
        region: Region | None = None,
    ) -> None:
        self.feedback.append(
            Feedback(
                item_id=self.item.item_id,
                action=action,
                client_key=f"{self.key_prefix}{part}",
                suggestion_id=None if suggestion is None else suggestion.suggestion_id,
                label=label,
                region=region,
                annotator=self.annotator,
                created_at=self.when,  # model_version: the suggestion's (record_decision)
            )
        )


def apply_annotation(
    store: Store,
    annotation: Mapping[str, Any],
    task: Mapping[str, Any],
    config: LabelingConfig | None,
    out: WebhookResult,
) -> None:
    """Record the decisions of one annotation of ``task`` (see the module docstring),
    counting them in ``out``; ``ValueError`` for an annotation that is not one."""
    annotation_id = int_id(annotation.get("id"), "annotation.id")
    results = annotation.get("result") or []
    if not isinstance(results, list):
        raise ValueError(f"annotation {annotation_id}: 'result' must be a list")
    ours = _our_suggestions(store, results)
    item = _find_item(store, ours, task, config)
    if item is None:
        out.reasons.append(
            f"annotation {annotation_id}: task {task.get('id')!r} names none of our suggestions "
            "and no stored item matches its data; skipped"
        )
        return
    prefix = annotation_prefix(annotation_id)
    version_prefix = f"{prefix}v{_version(annotation)}:"
    when = _timestamp(annotation.get("updated_at"))
    if _is_stale(store, item.item_id, prefix, version_prefix, when):
        out.reasons.append(f"annotation {annotation_id}: older than the version recorded; ignored")
        return
    decisions = _Decisions(item, version_prefix, _annotator(annotation), when)
    if annotation.get("was_cancelled"):
        decisions.add("skip", "item")
        out.skipped += 1
    else:
        _judge(store, annotation, results, ours, config, decisions, out)
    for fb in decisions.feedback:
        out.recorded += int(record_decision(store, fb).created)
    out.withdrawn += store.withdraw_feedback(prefix, keep_prefix=version_prefix)
    out.items.append(item.item_id)


def _our_suggestions(store: Store, results: Sequence[Any]) -> dict[int, SuggestionRecord]:
    ids = {suggestion_id_of(str(r.get("id"))) for r in results if isinstance(r, Mapping)}
    found: dict[int, SuggestionRecord] = {}
    for suggestion_id in sorted(i for i in ids if i is not None):
        try:
            found[suggestion_id] = store.get_suggestion(suggestion_id)
        except NotFoundError:
            continue
    owners = Counter(record.item_id for record in found.values())
    if not owners:
        return {}
    item_id = owners.most_common(1)[0][0]
    return {sid: record for sid, record in found.items() if record.item_id == item_id}


def _find_item(
    store: Store,
    ours: Mapping[int, SuggestionRecord],
    task: Mapping[str, Any],
    config: LabelingConfig | None,
) -> Item | None:
    if ours:
        return store.get_item(next(iter(ours.values())).item_id)
    data = task.get("data")
    if not isinstance(data, Mapping):
        return None
    if isinstance(data.get("item_id"), str):
        try:
            return store.get_item(data["item_id"])
        except NotFoundError:
            pass
    keys = [o.data_key for o in config.objects] if config is not None else list(data)
    for value in (data.get(key) for key in keys):
        if not isinstance(value, str) or not value:
            continue
        text_id = content_id(value.encode("utf-8"))  # an ingested text's id
        for found in ([text_id], store.find_item_ids(uri=value), store.find_item_ids(text=value)):
            item = _only_item(store, found)
            if item is not None and value in (item.uri, item.text):
                return item
    return None


def _only_item(store: Store, item_ids: Sequence[str]) -> Item | None:
    if len(item_ids) != 1:
        return None
    try:
        return store.get_item(item_ids[0])
    except NotFoundError:
        return None


def _is_stale(store: Store, item_id: str, prefix: str, version_prefix: str, when: datetime) -> bool:
    """True when another version of this annotation was recorded with a later time."""
    return any(
        r.feedback.client_key.startswith(prefix)
        and not r.feedback.client_key.startswith(version_prefix)
        and r.feedback.created_at > when
        for r in store.feedback_for(item_id)
    )


def _judge(
    store: Store,
    annotation: Mapping[str, Any],
    results: Sequence[Any],
    ours: Mapping[int, SuggestionRecord],
    config: LabelingConfig | None,
    decisions: _Decisions,
    out: WebhookResult,
) -> None:
    regions, errors = parse_results(results, config, decisions.item)
    out.invalid += len(errors)
    out.reasons.extend(errors)
    groups: dict[int, list[AnnotatedRegion]] = {}
    choices: list[AnnotatedRegion] = []  # whole-item classes match by label, not by id
    drawn: list[AnnotatedRegion] = []
    for region in regions:
        sid = region.suggestion_id
        if region.result_type == "choices":
            choices.append(region)
        elif sid is not None and sid in ours:
            groups.setdefault(sid, []).append(region)
        else:
            drawn.append(region)
            if sid is not None:
                out.reasons.append(
                    f"result {region.result_id!r} names suggestion {sid}, which is not one of "
                    f"item {decisions.item.item_id!r}; kept as a new region"
                )
    for record in _judged(store, decisions.item, ours, annotation):
        action, label, changed = _decide(record, groups, choices, config)
        decisions.add(action, f"s{record.suggestion_id}", record, label=label, region=changed)
        out.tally(action)
    for n, region in enumerate(drawn + choices):
        decisions.add("edit", f"n{n}", label=region.label, region=region.region)
        out.unlinked += 1
    decisions.add("accept", "item")


def _decide(
    record: SuggestionRecord,
    groups: Mapping[int, list[AnnotatedRegion]],
    choices: list[AnnotatedRegion],
    config: LabelingConfig | None,
) -> tuple[FeedbackAction, str | None, Region | None]:
    """The decision on one suggestion of the judged prediction, with what changed for
    an ``edit``; a matched whole-item class is taken out of ``choices``."""
    suggestion = record.suggestion
    if not was_shown(suggestion, config):
        return "skip", None, None
    group = groups.get(record.suggestion_id)
    if group is not None:
        changed = first_change(suggestion, group, config)
        if changed is None:
            return "accept", None, None
        label = None if same_label(suggestion, changed, config) else changed.label
        region = None if same_geometry(suggestion, changed) else changed.region
        return "edit", label, region
    if suggestion.region is None:
        chosen = next((c for c in choices if same_label(suggestion, c, config)), None)
        if chosen is not None:
            choices.remove(chosen)
            return "accept", None, None
    return "reject", None, None


def _judged(
    store: Store, item: Item, ours: Mapping[int, SuggestionRecord], annotation: Mapping[str, Any]
) -> list[SuggestionRecord]:
    """Suggestions of the prediction(s) the annotator saw, in id order.

    Those of the named suggestions' predictions; with none named, the prediction
    the annotation started from (``prediction.model_version``, else the latest),
    or nothing when it did not start from one.
    """
    # By prediction, not by the suggestions' own versions: a chained prediction's boxes
    # and masks carry the detector's and the segmenter's, the prediction a combined one.
    predictions = {record.prediction_id for record in ours.values()}
    if predictions:
        found = [
            r for p in predictions for r in store.suggestions_for(item.item_id, prediction_id=p)
        ]
    else:
        shown = annotation.get("prediction")
        version = shown.get("model_version") if isinstance(shown, Mapping) else None
        if not annotation.get("parent_prediction") and not version:
            return []
        found = store.suggestions_for(item.item_id, model_version=str(version) if version else None)
    records = {r.suggestion_id: r for r in found}
    return [records[k] for k in sorted(records)]
