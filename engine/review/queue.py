"""The labeling queue: the highest-scored unlabeled item, leased to one annotator.

Serving order is the items' score, descending (higher = label first), ties by
``item_id``; the claim that guarantees one annotator per item is a single SQL
statement in ``engine.store.queue``. This module is the policy around it.

An annotator asking again while holding a live lease that matches the filters
gets the same item back. Leases expire and the item is then served again;
``heartbeat`` extends one, ``release`` gives it back.

**Re-ranking.** ``Store.save_predictions`` sets an item's score from its
newest prediction; ``rescore`` updates many scores at once (a new sampling
policy, diversity re-weighting). A recorded decision
(``engine.review.decisions.record_decision``) changes the queue through
``Store.record_feedback`` and then ``after_feedback``:

- item-level ``accept`` / ``edit`` / ``reject``: the item is labeled and
  leaves the queue (``record_feedback``); a machine label becomes a human one;
- item-level ``skip``: the lease is released (``record_feedback``) and the
  score is *lowered* (``after_feedback``, ``skip_factor``), so the next
  annotator is not handed the item someone just passed on;
- suggestion-level ``edit`` / ``reject`` on an item that confidence routing
  labeled (``engine.review.routing``) puts it back in the queue: a human
  overrides the machine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from engine.quality import consensus
from engine.store import FeedbackRecord, Lease, NotFoundError, QueueFilter, Store

QueueEffect = Literal["none", "lowered", "requeued", "confirmed"]


class LeaseHeldError(RuntimeError):
    """Someone else holds a live lease on the item (HTTP 409)."""

    def __init__(self, item_id: str, holder: str, expires_at: float, who: str) -> None:
        until = datetime.fromtimestamp(expires_at, tz=UTC).isoformat(timespec="seconds")
        super().__init__(
            f"item {item_id!r} is leased to {holder!r} until {until}; {who!r} cannot act on "
            "it before that lease ends (ask /queue/next for another item)"
        )
        self.item_id, self.holder, self.expires_at = item_id, holder, expires_at


def _check_lease_seconds(lease_seconds: float) -> None:
    if not math.isfinite(lease_seconds) or lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be a positive number, got {lease_seconds}")


def next_item(
    store: Store,
    annotator: str,
    *,
    lease_seconds: float,
    model_version: str | None = None,
    label: str | None = None,
    label_threshold: float = 0.0,
    job_id: str | None = None,
    gold_rate: float = 0.0,
    now: float | None = None,
) -> Lease | None:
    """Lease the best servable item to ``annotator``; ``None`` when nothing matches.

    Without filters, consensus and gold items take part (``engine.quality.consensus``):
    with probability ``gold_rate`` a gold item the person has not had comes first.

    Filters (all optional, combined with AND): ``model_version`` — the item's
    score comes from that model version; ``label`` — the item has a
    suggestion with that label scoring ``>= label_threshold`` that no human
    rejected (of ``model_version`` when given); ``job_id`` — a prediction of
    the item was written by that job. A live lease the annotator already
    holds is returned when it matches the filters; otherwise a new item is
    leased (the old lease runs on until released or expired).
    """
    if not annotator:
        raise ValueError("annotator must be non-empty")
    _check_lease_seconds(lease_seconds)
    if not 0.0 <= label_threshold <= 1.0:
        raise ValueError(f"label_threshold must be in [0, 1], got {label_threshold}")
    if label is not None and not label:
        raise ValueError("label filter must be non-empty when given")
    where = QueueFilter(model_version, label, label_threshold, job_id)
    gold = consensus.wants_gold(gold_rate)
    return store.lease_next(annotator, lease_seconds, where, now, gold_first=gold)


def heartbeat(
    store: Store, item_id: str, annotator: str, *, lease_seconds: float, now: float | None = None
) -> Lease:
    """Extend a live lease held by ``annotator``; a lost lease is a ``LookupError``."""
    _check_lease_seconds(lease_seconds)
    clock = time.time() if now is None else now
    if store.extend_lease(item_id, annotator, clock + lease_seconds, clock):
        return store.lease_of(item_id)
    if store.extend_assignment(item_id, annotator, clock + lease_seconds, clock):
        return Lease(item_id, annotator, clock + lease_seconds, store.item_score(item_id))
    raise NotFoundError(f"{annotator!r} holds no live lease on item {item_id!r}")


def check_not_held(store: Store, item_id: str, who: str, *, now: float | None = None) -> None:
    """``LeaseHeldError`` when a live lease on the item belongs to someone other than ``who``.

    An item nobody holds may be acted on (editors that do not lease).
    """
    lease = store.lease_of(item_id)
    clock = time.time() if now is None else now
    live = lease.annotator is not None and lease.expires_at is not None
    if live and lease.annotator != who and lease.expires_at >= clock:
        raise LeaseHeldError(item_id, lease.annotator, lease.expires_at, who)


def release(store: Store, item_id: str, annotator: str) -> bool:
    """Give a lease back without feedback; returns whether one was held."""
    if store.release_lease(item_id, annotator):
        return True
    return store.release_assignment(item_id, annotator)


def rescore(
    store: Store,
    item_ids: Sequence[str],
    scores: Sequence[float],
    *,
    model_version: str | None = None,
) -> int:
    """Set many items' queue scores in one transaction; returns how many items exist.

    ``scores[i]`` (finite, higher = label first) becomes ``item_ids[i]``'s
    score; with ``model_version`` it is also recorded as the score's source.
    Unknown ids are ignored (counted out of the result). Leases and labeled
    state are untouched.
    """
    if len(item_ids) != len(scores):
        raise ValueError(f"item_ids ({len(item_ids)}) and scores ({len(scores)}) must align")
    for item_id, score in zip(item_ids, scores, strict=True):
        if not math.isfinite(float(score)):
            raise ValueError(f"score for item {item_id!r} is not finite: {score!r}")
    if len(set(item_ids)) != len(item_ids):
        raise ValueError("item_ids must be distinct")
    return store.set_scores(item_ids, scores, model_version)


def after_feedback(
    store: Store, record: FeedbackRecord, *, skip_factor: float = 0.5
) -> QueueEffect:
    """Re-rank after ``store.record_feedback`` (see the module docstring); retry-safe.

    Does nothing for a replayed client key (``record.created`` is False).
    ``skip_factor`` in ``[0, 1]``: a skip moves the score ``s`` to
    ``s - |s| * (1 - skip_factor)`` (``s * skip_factor`` for ``s >= 0``).
    """
    if not 0.0 <= skip_factor <= 1.0:
        raise ValueError(f"skip_factor must be in [0, 1], got {skip_factor}")
    fb = record.feedback
    if not record.created:
        return "none"
    if fb.suggestion_id is None and fb.action == "skip":
        return "lowered" if store.lower_score(fb.item_id, skip_factor) else "none"
    if fb.suggestion_id is None:
        return "confirmed" if store.confirm_machine_label(fb.item_id) else "none"
    if fb.action in ("edit", "reject"):
        return "requeued" if store.requeue_machine_label(fb.item_id) else "none"
    return "none"
