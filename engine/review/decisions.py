"""A person's decision on a suggestion or a whole item: validated, recorded, re-ranked.

``record_decision`` is the one way a decision enters the store, whether an
editor posts it (``POST /feedback``) or Label Studio sends an annotation (the
webhook, ``engine.labelstudio.webhook``):

- the item must exist, and the decision's region must fit it
  (``check_region_fits``): a span needs a text item and must lie within its
  text, a box or mask needs an image item;
- a named suggestion must exist (``Store.record_feedback`` refuses one of
  another item); the decision's ``model_version`` defaults to the suggestion's;
- an annotator may not judge an item someone else holds a live lease on
  (``respect_leases``; an item nobody holds may be judged);
- ``Store.record_feedback`` records it once per client key (a replay returns
  the first record), then ``engine.review.queue.after_feedback`` re-ranks the
  queue (nothing for a replay).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.quality import consensus
from engine.review.queue import QueueEffect, after_feedback, check_not_held
from engine.store import FeedbackRecord, Store
from engine.types import Box, Feedback, Item, Mask, Region, Span


@dataclass(frozen=True)
class Decision:
    """A recorded decision (``record.created`` is False for a replay) and what it did
    to the queue."""

    record: FeedbackRecord
    effect: QueueEffect

    @property
    def created(self) -> bool:
        return self.record.created


def check_region_fits(item: Item, region: Region | None) -> None:
    """Raise ``ValueError`` when ``region`` cannot belong to ``item``."""
    if region is None:
        return
    if isinstance(region, Span):
        if item.kind != "text" or item.text is None:
            raise ValueError(f"a span region needs a text item; {item.item_id!r} is an image")
        region.check_within(item.text)
    elif isinstance(region, Box | Mask) and item.kind != "image":
        raise ValueError(f"a {region.kind} region needs an image item; {item.item_id!r} is a text")


def record_decision(
    store: Store,
    feedback: Feedback,
    *,
    skip_factor: float = 0.5,
    respect_leases: bool = False,
) -> Decision:
    """Validate ``feedback`` against the stored item / suggestion, record it once per
    client key and re-rank the queue (see the module docstring).

    ``respect_leases``: refuse (``LeaseHeldError``) a decision on an item whose live
    lease belongs to someone other than ``feedback.annotator`` (an annotator's
    decision; a reviewer's overrules). Raises ``NotFoundError`` for an unknown item
    or suggestion, ``ValueError`` when the region or suggestion does not fit the item.
    """
    item = store.get_item(feedback.item_id)
    if respect_leases:
        check_not_held(store, item.item_id, feedback.annotator)
        consensus.check_may_decide(store, item.item_id, feedback.annotator)
    check_region_fits(item, feedback.region)
    if feedback.suggestion_id is not None:
        suggestion = store.get_suggestion(feedback.suggestion_id)
        if not feedback.model_version:
            feedback = replace(feedback, model_version=suggestion.suggestion.model_version)
    record = store.record_feedback(feedback)
    effect = after_feedback(store, record, skip_factor=skip_factor)
    consensus.after_decision(store, record)
    return Decision(record, effect)
