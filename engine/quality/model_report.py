"""Model versus human: how people judged each model version's suggestions, per class and day.

Used by ``engine.quality.report``; see its docstring for the definitions.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.quality.matching import match, region_iou
from engine.store import Store
from engine.types import Feedback, region_from_dict


@dataclass(frozen=True)
class ReportFilter:
    """What a report covers: decisions in [since, until), one class, version, person."""

    since: datetime | None = None
    until: datetime | None = None
    label: str | None = None
    model_version: str | None = None
    person: str | None = None


@dataclass(frozen=True)
class _Judged:
    """One suggestion judged by a person: explicitly, or with its whole item."""

    model_version: str
    label: str
    action: str  # accept | edit | reject
    decided_at: datetime | None
    edit_iou: float | None = None


def judged_suggestions(store: Store, feedback: list[Feedback], flt: ReportFilter) -> list[_Judged]:
    """Every suggestion a person judged: its latest explicit verdict (``Store.verdicts``),
    and, where a person finished an item (accept / reject) without deciding on some of
    its latest suggestions one by one, those suggestions as accepted / rejected with it."""
    out: list[_Judged] = []
    explicit: set[tuple[int, str | None]] = set()
    for v in store.verdicts(model_version=flt.model_version):
        explicit.add((v.suggestion_id, v.annotator))
        iou = None
        if v.action == "edit" and v.region is not None and v.suggested_region is not None:
            iou = region_iou(region_from_dict(v.suggested_region), region_from_dict(v.region))
        out.append(_Judged(v.model_version or "", v.suggested_label, v.action, v.decided_at, iou))
    decided = {(fb.suggestion_id, fb.annotator) for fb in feedback if fb.suggestion_id is not None}
    finished: dict[tuple[str, str], Feedback] = {}
    for fb in feedback:
        if fb.suggestion_id is None and fb.action in ("accept", "reject"):
            finished[fb.item_id, fb.annotator] = fb
    for (item_id, person), fb in sorted(finished.items()):
        for record in store.suggestions_for(item_id, model_version=flt.model_version):
            key = (record.suggestion_id, person)
            if key in decided or key in explicit:
                continue
            s = record.suggestion
            out.append(_Judged(s.model_version, s.label, fb.action, fb.created_at))
    if flt.label is not None:
        out = [j for j in out if j.label == flt.label]
    return [j for j in out if _within(j.decided_at, flt)]


def _within(when: datetime | None, flt: ReportFilter) -> bool:
    if when is None:
        return flt.since is None and flt.until is None
    return (flt.since is None or when >= flt.since) and (flt.until is None or when < flt.until)


def final_recall(store: Store, flt: ReportFilter) -> dict[tuple[str, str], tuple[int, int]]:
    """Per (model version, class): of the final labels of finished items, how many the
    item's latest prediction of that version had (same class, IoU >= 0.5): ``(found, all)``."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for entry in store.labeled_items():
        if not entry.reviewed:
            continue
        suggested = store.suggestions_for(entry.item.item_id, model_version=flt.model_version)
        if not suggested:
            continue
        version = suggested[0].suggestion.model_version
        found = {i for i, _, _ in match(entry.labels, [r.suggestion for r in suggested]).pairs}
        for i, label in enumerate(entry.labels):
            if flt.label is None or label.label == flt.label:
                counts[version, label.label][0] += i in found
                counts[version, label.label][1] += 1
    return {key: (value[0], value[1]) for key, value in counts.items()}


def models_section(
    judged: list[_Judged], recall: dict[tuple[str, str], tuple[int, int]]
) -> list[dict[str, Any]]:
    """Per model version and class: how people judged its suggestions; ``precision`` the
    share kept (accepted or edited), ``recall`` the share of final labels it suggested."""
    groups: dict[tuple[str, str], list[_Judged]] = defaultdict(list)
    for j in judged:
        groups[j.model_version, j.label].append(j)
    rows = []
    for (version, label), group in sorted(groups.items()):
        n = len(group)
        found, total = recall.get((version, label), (0, 0))
        count = {a: sum(j.action == a for j in group) for a in ("accept", "edit", "reject")}
        edit_ious = [j.edit_iou for j in group if j.edit_iou is not None]
        rows.append(
            {
                "model_version": version,
                "label": label,
                "judged": n,
                "acceptance_rate": count["accept"] / n,
                "edit_rate": count["edit"] / n,
                "rejection_rate": count["reject"] / n,
                "precision": (count["accept"] + count["edit"]) / n,
                "recall": found / total if total else None,
                "final_labels": total,
                "mean_edit_iou": statistics.fmean(edit_ious) if edit_ious else None,
            }
        )
    return rows


def acceptance_over_time(judged: list[_Judged]) -> list[dict[str, Any]]:
    """Per model version and UTC day: suggestions judged and the share accepted as is."""
    days: dict[tuple[str, str], list[str]] = defaultdict(list)
    for j in judged:
        if j.decided_at is not None:
            days[j.model_version, j.decided_at.date().isoformat()].append(j.action)
    return [
        {
            "model_version": version,
            "day": day,
            "judged": len(actions),
            "acceptance_rate": actions.count("accept") / len(actions),
        }
        for (version, day), actions in sorted(days.items())
    ]
