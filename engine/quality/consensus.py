"""Consensus and gold: which items, who gets them, how a final label is decided.

- **Overlap.** ``choose_overlap`` makes a fraction of the unlabeled backlog
  (or given items) consensus items for ``k`` distinct people. The store hands
  each to at most ``k`` people, never twice to one (``engine.store.consensus``),
  and keeps each person's decisions their own.
- **Resolution** (``after_decision``, when the k-th person finishes): all k
  label sets agree (``matching.labels_agree``: same labels, regions matched at
  IoU >= 0.5) -> the final label, resolution ``consensus``; otherwise the item
  waits in the reviewer queue (``review_cases``) with every decision side by
  side, and ``resolve_by_reviewer`` picks one person's labels or takes merged ones.
- **Gold.** ``mark_gold`` gives items known labels (a reviewer's, or the item's
  labels as they stand). Gold items are mixed into each annotator's queue at
  ``gold_rate`` (``wants_gold``), each person once, and look like any other item.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.quality.matching import labels_agree
from engine.store import FeedbackRecord, QualityItem, ReviewedLabel, Store
from engine.types import region_from_dict

_FINISHING = ("accept", "edit", "reject")


class NotAssignedError(RuntimeError):
    """An annotator decided on a quality item they were not handed (HTTP 409)."""


class QualityStateError(ValueError):
    """The quality item is not in a state that allows this (HTTP 409)."""


@dataclass(frozen=True)
class PlainLabel:
    label: str
    region: Any


def label_dict(label: ReviewedLabel | PlainLabel) -> dict[str, Any]:
    region = label.region
    return {"label": label.label, "region": None if region is None else region.to_dict()}


def parse_labels(rows: Sequence[Mapping[str, Any]]) -> list[PlainLabel]:
    """``[{"label": ..., "region": {...} | null}]`` -> labels; ``ValueError`` names the row."""
    out = []
    for i, row in enumerate(rows):
        label = row.get("label")
        if not isinstance(label, str) or not label:
            raise ValueError(f"labels[{i}].label must be a non-empty string")
        try:
            region = region_from_dict(row.get("region"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"labels[{i}].region: {exc}") from exc
        out.append(PlainLabel(label, region))
    return out


def choose_overlap(
    store: Store,
    *,
    k: int,
    fraction: float | None = None,
    item_ids: Sequence[str] | None = None,
    seed: int = 0,
    batch: str | None = None,
) -> list[str]:
    """Make items consensus items for ``k`` people: ``item_ids``, or a seeded random
    ``fraction`` of the unlabeled backlog. Returns the ids newly made overlap items."""
    if k < 2:
        raise ValueError(f"overlap needs k >= 2 people, got {k}")
    if (fraction is None) == (item_ids is None):
        raise ValueError("give either fraction or item_ids")
    if item_ids is not None:
        for item_id in item_ids:
            store.get_item(item_id)
        chosen = list(dict.fromkeys(item_ids))
    else:
        assert fraction is not None
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        pool = store.single_unlabeled_ids()
        chosen = sorted(random.Random(seed).sample(pool, round(len(pool) * fraction)))
    rows = [
        {"item_id": i, "role": "overlap", "k": k, "state": "open", "batch": batch} for i in chosen
    ]
    store.add_quality_items(rows)
    return [i for i in chosen if (q := store.quality_item(i)) is not None and q.role == "overlap"]


def mark_gold(
    store: Store,
    item_id: str,
    *,
    labels: Sequence[Mapping[str, Any]] | None,
    by: str,
) -> QualityItem:
    """Make ``item_id`` gold with ``labels`` (default: its labels as they stand now)."""
    item = store.get_item(item_id)
    existing = store.quality_item(item_id)
    if existing is not None:
        raise QualityStateError(f"item {item_id!r} is already a {existing.role} item")
    if labels is None:
        current = store.item_labels(item)
        if not current.reviewed:
            raise ValueError(
                f"item {item_id!r} has no reviewed labels to make gold; give its labels"
            )
        final = [label_dict(lab) for lab in current.labels]
    else:
        final = [label_dict(lab) for lab in parse_labels(labels)]
    store.mark_gold([{"item_id": item_id, "final_labels": final, "resolved_by": by}])
    made = store.quality_item(item_id)
    assert made is not None
    return made


def wants_gold(gold_rate: float, rng: random.Random | None = None) -> bool:
    """Whether this lease should try a gold item first (probability ``gold_rate``)."""
    if not 0.0 <= gold_rate <= 1.0:
        raise ValueError(f"gold_rate must be in [0, 1], got {gold_rate}")
    return gold_rate > 0 and (rng or random).random() < gold_rate


def check_may_decide(store: Store, item_id: str, annotator: str) -> None:
    """``NotAssignedError`` when ``item_id`` is a quality item ``annotator`` was never handed."""
    if store.quality_item(item_id) is None:
        return
    if not any(a.annotator == annotator for a in store.assignments(item_id=item_id)):
        raise NotAssignedError(
            f"item {item_id!r} is not assigned to {annotator!r}; ask /queue/next for an item"
        )


def finished_by(store: Store, item_id: str) -> list[str]:
    return [a.annotator for a in store.assignments(item_id=item_id) if a.done_at is not None]


def after_decision(store: Store, record: FeedbackRecord) -> str | None:
    """Resolve an overlap item once its k-th person finished; the state it reached."""
    fb = record.feedback
    if not record.created or fb.suggestion_id is not None or fb.action not in _FINISHING:
        return None
    quality = store.quality_item(fb.item_id)
    if quality is None or quality.role != "overlap" or quality.state != "open":
        return None
    people = finished_by(store, fb.item_id)
    if len(people) < int(quality.k or 0):
        return None
    return resolve(store, quality, people)


def resolve(store: Store, quality: QualityItem, people: Sequence[str]) -> str:
    item = store.get_item(quality.item_id)
    given = {person: store.person_labels(item, person) for person in people}
    group = majority(given)
    if len(group) == len(people):
        final = [label_dict(lab) for lab in given[group[0]]]
        store.set_quality_state(
            item.item_id, state="final", final_labels=final, resolution="consensus"
        )
        return "final"
    store.set_quality_state(item.item_id, state="review")
    return "review"


def majority(given: Mapping[str, Sequence[ReviewedLabel]]) -> list[str]:
    """The largest group of people whose labels all agree with its first member's."""
    best: list[str] = []
    for person, labels in given.items():
        group = [other for other, theirs in given.items() if labels_agree(labels, theirs)]
        if len(group) > len(best):
            best = [person, *[g for g in group if g != person]]
    return best


@dataclass(frozen=True)
class ReviewCase:
    """An overlap item the k people did not all agree on, with every decision."""

    item_id: str
    k: int
    decisions: dict[str, tuple[ReviewedLabel, ...]]
    majority: list[str]  # people of the majority (> k/2), empty when there is none


def review_cases(store: Store) -> list[ReviewCase]:
    cases = []
    for quality in store.quality_items(role="overlap", state="review"):
        item = store.get_item(quality.item_id)
        people = finished_by(store, quality.item_id)
        given = {p: store.person_labels(item, p) for p in people}
        group = majority(given)
        k = int(quality.k or len(people))
        cases.append(ReviewCase(item.item_id, k, given, group if len(group) * 2 > k else []))
    return cases


def resolve_by_reviewer(
    store: Store,
    item_id: str,
    *,
    reviewer: str,
    pick: str | None = None,
    labels: Sequence[Mapping[str, Any]] | None = None,
) -> QualityItem:
    """Final labels for an item in the reviewer queue: one person's (``pick``) or merged
    ``labels``."""
    quality = store.quality_item(item_id)
    if quality is None or quality.role != "overlap":
        raise QualityStateError(f"item {item_id!r} is not a consensus item")
    if quality.state != "review":
        raise QualityStateError(f"item {item_id!r} is {quality.state}, not waiting for review")
    if (pick is None) == (labels is None):
        raise ValueError("give either pick (a person) or labels")
    if pick is not None:
        if pick not in finished_by(store, item_id):
            raise ValueError(f"{pick!r} did not label item {item_id!r}")
        final = [label_dict(lab) for lab in store.person_labels(store.get_item(item_id), pick)]
    else:
        assert labels is not None
        final = [label_dict(lab) for lab in parse_labels(labels)]
    store.set_quality_state(
        item_id, state="final", final_labels=final, resolution="reviewer", resolved_by=reviewer
    )
    done = store.quality_item(item_id)
    assert done is not None
    return done
