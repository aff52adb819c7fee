"""The quality report: agreement, resolution, gold accuracy, people, model vs human.

Everything ``GET /reports/quality`` and ``labelengine report quality`` show,
computed from the store on request:

- **agreement** over consensus items finished by >= 2 people: Fleiss' kappa of
  the item-level answer (the sorted set of label names a person gave), per
  class (does the person's answer contain the class: yes / no), on each
  suggestion (kept or dropped), Krippendorff's alpha (missing raters allowed),
  Cohen's kappa per pair of people, regions matched by IoU (mean IoU, Dice,
  unmatched) and span F1 (exact, overlap) between every two people;
- **resolution**: consensus items open, waiting for a reviewer, final;
- **people**: decisions, labeling units (every label a person applies is one),
  decisions per hour, median seconds per consensus / gold item, agreement with
  the final label, accuracy on gold (all labels matched at IoU >= 0.5);
- **models**: per model version and class, the share of judged suggestions
  accepted, edited and rejected (a suggestion left undecided on an item a person
  accepted or rejected as a whole counts as accepted or rejected with it), the
  mean IoU between a suggestion and its edit;
  ``models_over_time``: the acceptance rate per model version and UTC day.

``attention`` names the classes with kappa below 0.6 and the people below 0.6
on gold or consensus: where the instructions are unclear, who needs a word.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import combinations
from typing import Any

from engine.quality import agreement
from engine.quality.matching import labels_agree, match, span_f1
from engine.quality.model_report import (
    ReportFilter,
    acceptance_over_time,
    final_recall,
    judged_suggestions,
    models_section,
)
from engine.store import QualityItem, ReviewedLabel, Store
from engine.types import Feedback, Span, region_from_dict

ATTENTION_BELOW = agreement.CLARIFY_BELOW


@dataclass(frozen=True)
class _Rated:
    """One consensus item with the labels each person who finished it gave."""

    quality: QualityItem
    given: dict[str, tuple[ReviewedLabel, ...]]


def _answer(labels: Sequence[ReviewedLabel]) -> str:
    return ",".join(sorted(lab.label for lab in labels)) or "(none)"


def _finished(store: Store, quality: QualityItem) -> list[str]:
    return [a.annotator for a in store.assignments(item_id=quality.item_id) if a.done_at]


def rated_items(store: Store, role: str, *, batch: str | None = None) -> list[_Rated]:
    """Quality items of ``role`` (of ``batch``) with the labels of each person who
    finished them."""
    out = []
    for quality in store.quality_items(role=role, batch=batch):
        item = store.get_item(quality.item_id)
        people = _finished(store, quality)
        out.append(_Rated(quality, {p: store.person_labels(item, p) for p in people}))
    return out


def _kappa_entry(ratings: list[list[str]]) -> dict[str, Any]:
    if not ratings:
        return {"items": 0, "fleiss_kappa": None, "verdict": "n/a"}
    table, _ = agreement.category_table(ratings)
    kappa = agreement.fleiss_kappa(table)
    return {"items": len(ratings), "fleiss_kappa": kappa, "verdict": agreement.verdict_of(kappa)}


def _complete(rated: list[_Rated]) -> list[_Rated]:
    """Items with the most common number of raters (Fleiss needs equal counts)."""
    counts = [len(r.given) for r in rated if len(r.given) >= 2]
    if not counts:
        return []
    n = statistics.mode(counts)
    return [r for r in rated if len(r.given) == n]


def agreement_section(rated: list[_Rated], flt: ReportFilter) -> dict[str, Any]:
    complete = _complete(rated)
    section = _kappa_entry([[_answer(v) for v in r.given.values()] for r in complete])
    classes = sorted({lab.label for r in complete for v in r.given.values() for lab in v})
    if flt.label is not None:
        classes = [c for c in classes if c == flt.label]
    section["per_class"] = [
        {
            "label": c,
            **_kappa_entry(
                [
                    [str(any(lab.label == c for lab in v)) for v in r.given.values()]
                    for r in complete
                ]
            ),
        }
        for c in classes
    ]
    keep: list[list[str]] = []
    for r in complete:
        ids = {lab.suggestion_id for v in r.given.values() for lab in v if lab.suggestion_id}
        for sid in sorted(ids):  # type: ignore[type-var]
            keep.append(
                [
                    "kept" if any(lab.suggestion_id == sid for lab in v) else "dropped"
                    for v in r.given.values()
                ]
            )
    section["suggestions"] = _kappa_entry(keep)
    section["krippendorff_alpha"] = _alpha(rated)
    section["pairs"] = _pairs(rated)
    section["regions"], section["spans"] = _overlap(rated)
    return section


def _alpha(rated: list[_Rated]) -> float | None:
    people = sorted({p for r in rated for p in r.given})
    usable = [r for r in rated if len(r.given) >= 2]
    if len(people) < 2 or not usable:
        return None
    data = [[_answer(r.given[p]) if p in r.given else None for r in usable] for p in people]
    return agreement.krippendorff_alpha(data)


def _pairs(rated: list[_Rated]) -> list[dict[str, Any]]:
    shared: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for r in rated:
        for a, b in combinations(sorted(r.given), 2):
            shared[a, b][0].append(_answer(r.given[a]))
            shared[a, b][1].append(_answer(r.given[b]))
    out = []
    for (a, b), (first, second) in sorted(shared.items()):
        kappa = agreement.cohen_kappa(first, second)
        out.append(
            {
                "people": [a, b],
                "items": len(first),
                "cohen_kappa": kappa,
                "verdict": agreement.verdict_of(kappa),
            }
        )
    return out


def _overlap(rated: list[_Rated]) -> tuple[dict[str, Any], dict[str, Any]]:
    ious: list[float] = []
    unmatched = compared = 0
    exact: list[float] = []
    loose: list[float] = []
    for r in rated:
        for a, b in combinations(sorted(r.given), 2):
            first, second = r.given[a], r.given[b]
            regions_a = [
                x for x in first if x.region is not None and not isinstance(x.region, Span)
            ]
            regions_b = [
                x for x in second if x.region is not None and not isinstance(x.region, Span)
            ]
            if regions_a or regions_b:
                m = match(regions_a, regions_b)
                compared += 1
                ious.extend(iou for *_, iou in m.pairs)
                unmatched += m.unmatched_first + m.unmatched_second
            spans_a = [x for x in first if isinstance(x.region, Span)]
            spans_b = [x for x in second if isinstance(x.region, Span)]
            if spans_a or spans_b:
                exact.append(span_f1(spans_a, spans_b).f1)
                loose.append(span_f1(spans_a, spans_b, overlap=True).f1)
    regions = {
        "pairs_compared": compared,
        "matched": len(ious),
        "unmatched": unmatched,
        "mean_iou": statistics.fmean(ious) if ious else None,
        "mean_dice": statistics.fmean(2 * i / (1 + i) for i in ious) if ious else None,
    }
    spans = {
        "pairs_compared": len(exact),
        "exact_f1": statistics.fmean(exact) if exact else None,
        "overlap_f1": statistics.fmean(loose) if loose else None,
    }
    return regions, spans


def _final(quality: QualityItem) -> list[Any]:
    @dataclass(frozen=True)
    class _L:
        label: str
        region: Any

    return [_L(str(d["label"]), region_from_dict(d.get("region"))) for d in quality.final_labels]


def people_section(
    store: Store, feedback: list[Feedback], overlap: list[_Rated], gold: list[_Rated]
) -> list[dict[str, Any]]:
    by_person: dict[str, list[Feedback]] = defaultdict(list)
    for fb in feedback:
        by_person[fb.annotator].append(fb)
    rows = []
    for person in sorted(set(by_person) | {p for r in (*overlap, *gold) for p in r.given}):
        mine = by_person.get(person, [])
        units, per_hour = _units(store, mine), _per_hour(mine)
        rows.append(
            {
                "name": person,
                "decisions": len(mine),
                "units": units,
                "decisions_per_hour": per_hour,
                "units_per_hour": None if per_hour is None else per_hour * units / len(mine),
                "median_seconds_per_item": _seconds_per_item(store, person),
                **_score(person, overlap, "consensus", final_only=True),
                **_score(person, gold, "gold", final_only=False),
            }
        )
    return rows


def _units(store: Store, mine: list[Feedback]) -> int:
    finished = {fb.item_id for fb in mine if fb.suggestion_id is None and fb.action != "skip"}
    if not mine:
        return 0
    person = mine[0].annotator
    return sum(len(store.person_labels(store.get_item(i), person)) for i in sorted(finished))


def _per_hour(mine: list[Feedback]) -> float | None:
    if len(mine) < 2:
        return None
    hours = (mine[-1].created_at - mine[0].created_at).total_seconds() / 3600.0
    return len(mine) / hours if hours > 0 else None


def _seconds_per_item(store: Store, person: str) -> float | None:
    spans = [a.done_at - a.leased_at for a in store.assignments(annotator=person) if a.done_at]
    return statistics.median(spans) if spans else None


def _score(person: str, rated: list[_Rated], name: str, *, final_only: bool) -> dict[str, Any]:
    judged = correct = 0
    ious: list[float] = []
    for r in rated:
        if person not in r.given or (final_only and r.quality.state != "final"):
            continue
        reference = _final(r.quality)
        judged += 1
        correct += labels_agree(r.given[person], reference)
        ious.extend(iou for *_, iou in match(r.given[person], reference).pairs)
    return {
        f"{name}_items": judged,
        f"{name}_correct": correct,
        f"{name}_accuracy": correct / judged if judged else None,
        f"{name}_mean_iou": statistics.fmean(ious) if ious else None,
    }


def quality_report(store: Store, flt: ReportFilter | None = None) -> dict[str, Any]:
    """The whole report as JSON-ready data (see the module docstring)."""
    flt = flt or ReportFilter()
    overlap, gold = rated_items(store, "overlap"), rated_items(store, "gold")
    feedback = store.feedback_between(since=flt.since, until=flt.until)
    people = people_section(store, feedback, overlap, gold)
    judged = judged_suggestions(store, feedback, flt)
    if flt.person is not None:
        people = [p for p in people if p["name"] == flt.person]
    section = agreement_section(overlap, flt)
    states = [q.quality.state for q in overlap]
    resolutions = [q.quality.resolution for q in overlap if q.quality.state == "final"]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "agreement": section,
        "resolution": {
            "items": len(overlap),
            "open": states.count("open"),
            "review": states.count("review"),
            "final_consensus": resolutions.count("consensus"),
            "final_reviewer": resolutions.count("reviewer"),
        },
        "gold": {"items": len(gold)},
        "people": people,
        "models": models_section(judged, final_recall(store, flt)),
        "models_over_time": acceptance_over_time(judged),
        "attention": _attention(section, people),
    }


def _attention(section: dict[str, Any], people: list[dict[str, Any]]) -> dict[str, Any]:
    def low(value: float | None) -> bool:
        return value is not None and value < ATTENTION_BELOW

    return {
        "classes": [c["label"] for c in section["per_class"] if low(c["fleiss_kappa"])],
        "people": [
            p["name"] for p in people if low(p["gold_accuracy"]) or low(p["consensus_accuracy"])
        ],
        "overall": agreement.verdict_of(section["fleiss_kappa"]),
    }
