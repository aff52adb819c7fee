"""Labels after review: one resolver for every export and every trainer.

An item's labels, gathered from its suggestions' statuses and its feedback:

- a suggestion ``accepted`` by a person or ``machine_accepted`` by routing is
  kept as suggested; ``edited``: its latest ``edit`` feedback's region and label
  replace the suggested ones where given; ``rejected``: dropped;
- a still ``pending`` suggestion of the item's latest prediction that nobody
  decided on (no suggestion-level feedback at all, not even a ``skip``, which
  is what an editor sends for a suggestion it did not show) is kept when the
  item's latest item-level decision is ``accept`` (the item was accepted as it
  stands: source ``item_accepted``); with ``include_suggestions=True`` the other
  pending ones are added too (source ``pending``);
- item-level ``accept`` / ``edit`` feedback that carries a label adds that label
  (a region a person drew, or a whole-item class when it has no region).

Suggestions judged on an older prediction count too. ``min_score`` filters
labels no person looked at (``pending`` and ``machine_accepted``) by model
score; a person's decision is kept whatever the score.

``ItemLabels.decision`` is the item's latest item-level accept / edit / reject
(``None``: nobody finished the item), ``reviewed`` whether it has any decision
other than ``skip``: a reviewed item without labels is a true negative.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, cast

from engine.store.base import NotFoundError
from engine.store.consensus import ConsensusQueries
from engine.store.feedback import FeedbackQueries
from engine.store.records import FeedbackRecord, QualityItem, SuggestionRecord
from engine.types import Feedback, Item, Region, region_from_dict

LabelSource = Literal[
    "accepted",
    "edited",
    "machine_accepted",
    "item_accepted",
    "pending",
    "feedback",
    "consensus",  # a quality item's final label: every one of its k people agreed
    "reviewer",  # a quality item's final label, picked or merged by a reviewer
    "gold",  # a gold item's known label
]
_BY_STATUS: dict[str, LabelSource] = {
    "accepted": "accepted",
    "edited": "edited",
    "machine_accepted": "machine_accepted",
    "pending": "pending",
}
_UNREVIEWED: tuple[LabelSource, ...] = ("pending", "machine_accepted")
_FINISHING = ("accept", "edit", "reject")


@dataclass(frozen=True)
class ReviewedLabel:
    """One label of an item: the project's label, its region in pixels, where it came from."""

    label: str
    region: Region | None
    score: float
    source: LabelSource
    model_version: str | None = None
    suggestion_id: int | None = None

    @property
    def reviewed(self) -> bool:
        """True when a person accepted or drew it (not only a model or a policy)."""
        return self.source not in _UNREVIEWED


@dataclass(frozen=True)
class ItemLabels:
    """An item with its labels; ``item_score`` is its queue score (higher = label first)."""

    item: Item
    labels: tuple[ReviewedLabel, ...]
    item_score: float | None = None
    decision: str | None = None  # latest item-level accept | edit | reject
    reviewed: bool = False  # any decision other than skip
    resolution: str | None = None  # a quality item's: consensus | reviewer | gold

    @property
    def decided_by(self) -> str:
        """How the labels were decided: ``consensus``, ``reviewer`` or ``gold`` (quality
        items), ``person`` (one person's decisions), ``machine`` (confidence routing
        alone) or ``model`` (suggestions nobody decided on)."""
        if self.resolution is not None:
            return self.resolution
        if self.reviewed:
            return "person"
        machine = any(lab.source == "machine_accepted" for lab in self.labels)
        return "machine" if machine else "model"


class LabelQueries(FeedbackQueries, ConsensusQueries):
    def item_labels(
        self, item: Item, *, include_suggestions: bool = False, min_score: float = 0.0
    ) -> ItemLabels:
        """The item's labels after review (rules in the module docstring).

        A quality item (consensus or gold) has its final labels only, once it has
        them, whatever its people decided one by one.
        """
        quality = self.quality_item(item.item_id)
        if quality is not None:
            return self._final_labels(item, quality)
        feedback = self.feedback_for(item.item_id)
        finishing = [
            r.feedback.action
            for r in feedback
            if r.feedback.suggestion_id is None and r.feedback.action in _FINISHING
        ]
        decision = finishing[-1] if finishing else None
        labels = self._suggestion_labels(item, feedback, include_suggestions, decision)
        kept = [lab for lab in labels if lab.reviewed or lab.score >= min_score]
        kept.extend(
            ReviewedLabel(
                r.feedback.label, r.feedback.region, 1.0, "feedback", r.feedback.model_version
            )
            for r in feedback
            if r.feedback.suggestion_id is None
            and r.feedback.action in ("accept", "edit")
            and r.feedback.label
        )
        reviewed = any(r.feedback.action != "skip" for r in feedback)
        return ItemLabels(item, tuple(kept), self.item_score(item.item_id), decision, reviewed)

    def _final_labels(self, item: Item, quality: QualityItem) -> ItemLabels:
        score = self.item_score(item.item_id)
        if quality.state != "final":
            return ItemLabels(item, (), score)
        source = cast(LabelSource, quality.resolution or "consensus")
        labels = tuple(
            ReviewedLabel(str(d["label"]), region_from_dict(d.get("region")), 1.0, source)
            for d in quality.final_labels
        )
        return ItemLabels(item, labels, score, "accept", True, quality.resolution)

    def person_labels(self, item: Item, annotator: str) -> tuple[ReviewedLabel, ...]:
        """The labels ``annotator`` alone gave the item, by the rules of the module
        docstring applied to their own decisions only (what consensus compares)."""
        feedback = self.feedback_for(item.item_id)
        mine = [r.feedback for r in feedback if r.feedback.annotator == annotator]
        finishing = [f.action for f in mine if f.suggestion_id is None and f.action in _FINISHING]
        decision = finishing[-1] if finishing else None
        latest: dict[int, Feedback] = {}
        for f in mine:
            if f.suggestion_id is not None:
                latest[f.suggestion_id] = f
        labels: list[ReviewedLabel] = []
        for record in self.suggestions_for(item.item_id):
            verdict = latest.get(record.suggestion_id)
            if verdict is None and decision == "accept":
                labels.append(_label(record, "item_accepted", None))
            elif verdict is not None and verdict.action in ("accept", "edit"):
                source: LabelSource = "edited" if verdict.action == "edit" else "accepted"
                labels.append(_label(record, source, verdict))
        labels.extend(
            ReviewedLabel(f.label, f.region, 1.0, "feedback", f.model_version)
            for f in mine
            if f.suggestion_id is None and f.action in ("accept", "edit") and f.label
        )
        return tuple(labels)

    def labeled_items(
        self, *, include_suggestions: bool = False, min_score: float = 0.0
    ) -> Iterator[ItemLabels]:
        """Every item with labels or a decision, in item id order."""
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        return self._labeled_items(include_suggestions, min_score)

    def _labeled_items(self, include_suggestions: bool, min_score: float) -> Iterator[ItemLabels]:
        for item in self.iter_items():
            entry = self.item_labels(
                item, include_suggestions=include_suggestions, min_score=min_score
            )
            if entry.labels or entry.reviewed:
                yield entry

    def _suggestion_labels(
        self,
        item: Item,
        feedback: list[FeedbackRecord],
        include_suggestions: bool,
        decision: str | None,
    ) -> list[ReviewedLabel]:
        edits: dict[int, Feedback] = {}
        decided: set[int] = set()
        for r in feedback:
            sid = r.feedback.suggestion_id
            if sid is not None:
                decided.add(sid)
                if r.feedback.action == "edit":
                    edits[sid] = r.feedback
        latest = {r.suggestion_id: r for r in self.suggestions_for(item.item_id)}
        records = dict(latest)
        for sid in sorted(decided - set(records)):  # judged on an older prediction
            try:
                records[sid] = self.get_suggestion(sid)
            except NotFoundError:
                continue
        labels = []
        for sid in sorted(records):
            source = _BY_STATUS.get(records[sid].status)
            if source == "pending":
                if decision == "accept" and sid in latest and sid not in decided:
                    source = "item_accepted"
                elif not include_suggestions:
                    source = None
            if source is not None:
                labels.append(_label(records[sid], source, edits.get(sid)))
        return labels


def _label(record: SuggestionRecord, source: LabelSource, edit: Feedback | None) -> ReviewedLabel:
    suggestion = record.suggestion
    label, region = suggestion.label, suggestion.region
    if source == "edited" and edit is not None:
        label = edit.label or label
        region = edit.region or region
    return ReviewedLabel(
        label, region, suggestion.score, source, suggestion.model_version, record.suggestion_id
    )
