"""The labeling queue: the highest-scored unlabeled item, leased to one annotator.

Serving order is ``items.score`` descending (higher = label first), ties by
``item_id``. An item can be served when it is unlabeled, scored, and nobody
holds a live lease on it; the partial index ``ix_items_ready`` holds exactly
the unlabeled, scored rows in serving order, so ``next`` reads the first few
index entries instead of sorting the backlog.

**One annotator per item.** ``next_item`` claims in a single statement,
``UPDATE items SET leased_by = ... WHERE item_id = (SELECT best free item)
AND <still free> RETURNING ...``:

- SQLite runs one writer at a time and a lone ``UPDATE`` takes the write lock
  before it reads (the driver's ``BEGIN`` is deferred and nothing precedes the
  statement in its transaction, so the busy timeout applies and there is no
  stale read-then-upgrade). The sub-select therefore sees every earlier claim:
  an explicit ``BEGIN IMMEDIATE`` would add nothing.
- PostgreSQL: the sub-select is ``FOR UPDATE SKIP LOCKED``: concurrent claims
  skip each other's rows instead of queueing on them, a row changed by a claim
  that committed meanwhile is re-checked (READ COMMITTED), and the outer
  ``WHERE`` re-checks the lease once more (compare-and-set).

An annotator asking again while holding a live lease that matches the filters
gets the same item back. Leases expire (``lease_expires_at``) and the item is
then served again; ``heartbeat`` extends one, ``release`` gives it back.

**Re-ranking.** ``store.save_predictions`` sets an item's score from its
newest prediction; ``rescore`` updates many scores at once (a new sampling
policy, diversity re-weighting). Feedback changes the queue through
``store.record_feedback`` and then ``after_feedback``:

- item-level ``accept`` / ``edit`` / ``reject``: the item is labeled and
  leaves the queue (``record_feedback``); a machine label becomes a human one;
- item-level ``skip``: the lease is released (``record_feedback``) and the
  score is *lowered* (``after_feedback``, ``skip_factor``), so the next
  annotator is not handed the item someone just passed on;
- suggestion-level ``edit`` / ``reject`` on an item that confidence routing
  labeled (``engine.review.routing``) puts it back in the queue: a human overrides
  the machine.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    exists,
    false,
    func,
    or_,
    select,
    true,
    update,
)

from engine.store import FeedbackRecord, NotFoundError, Store
from engine.store import schema as t

_MAX_CLAIM_ATTEMPTS = 5
_RESCORE_CHUNK = 5000

QueueEffect = Literal["none", "lowered", "requeued", "confirmed"]


@dataclass(frozen=True)
class Lease:
    item_id: str
    annotator: str
    expires_at: float  # epoch seconds
    score: float | None


_ITEM = t.items.c
_LEASE_COLUMNS = (_ITEM.item_id, _ITEM.leased_by, _ITEM.lease_expires_at, _ITEM.score)


def _free() -> ColumnElement[bool]:
    return or_(_ITEM.lease_expires_at.is_(None), _ITEM.lease_expires_at < bindparam("now"))


def _ready() -> ColumnElement[bool]:
    # Literal predicates (no bound parameters) so SQLite matches ix_items_ready.
    return and_(_ITEM.labeled == false(), _ITEM.score.is_not(None))


def _filters(by_version: bool, by_label: bool, by_job: bool) -> list[ColumnElement[bool]]:
    """Extra conditions on ``items`` for a filtered queue (values bound at execution)."""
    clauses: list[ColumnElement[bool]] = []
    if by_version:
        clauses.append(_ITEM.score_model_version == bindparam("f_version"))
    if by_label:
        s = t.suggestions.c
        has_label = [
            s.item_id == _ITEM.item_id,
            s.label == bindparam("f_label"),
            s.score >= bindparam("f_label_threshold"),
            s.status != "rejected",
        ]
        if by_version:  # through the prediction: chained ones carry a combined version
            p = t.predictions.c
            has_label += [
                p.prediction_id == s.prediction_id,
                p.model_version == bindparam("f_version"),
            ]
        clauses.append(exists().where(*has_label))
    if by_job:
        p = t.predictions.c
        clauses.append(exists().where(p.item_id == _ITEM.item_id, p.job_id == bindparam("f_job")))
    return clauses


@dataclass(frozen=True)
class _Statements:
    held: Any  # the annotator's live lease matching the filters, best first
    candidate: Any  # the best free item matching the filters
    claim: Any  # lease that item in one compare-and-set UPDATE ... RETURNING


@functools.cache
def _statements(by_version: bool, by_label: bool, by_job: bool) -> _Statements:
    """Built once per filter combination; SQLAlchemy then reuses the compiled SQL."""
    filters = _filters(by_version, by_label, by_job)
    order = (_ITEM.score.desc(), _ITEM.item_id)
    held = (
        select(*_LEASE_COLUMNS)
        .where(
            _ITEM.leased_by == bindparam("b_annotator"),
            _ITEM.lease_expires_at >= bindparam("now"),
            _ITEM.labeled == false(),
            *filters,
        )
        .order_by(*order)
        .limit(1)
    )
    candidate = select(_ITEM.item_id).where(_ready(), _free(), *filters).order_by(*order).limit(1)
    best = candidate.with_for_update(skip_locked=True).scalar_subquery()
    claim = (
        update(t.items)
        .where(_ITEM.item_id == best, _ready(), _free())
        .values(leased_by=bindparam("b_annotator"), lease_expires_at=bindparam("b_expires_at"))
        .returning(*_LEASE_COLUMNS)
    )
    return _Statements(held, candidate, claim)


def next_item(
    store: Store,
    annotator: str,
    *,
    lease_seconds: float,
    model_version: str | None = None,
    label: str | None = None,
    label_threshold: float = 0.0,
    job_id: str | None = None,
    now: float | None = None,
) -> Lease | None:
    """Lease the best servable item to ``annotator``; ``None`` when nothing matches.

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
    if not math.isfinite(lease_seconds) or lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be a positive number, got {lease_seconds}")
    if not 0.0 <= label_threshold <= 1.0:
        raise ValueError(f"label_threshold must be in [0, 1], got {label_threshold}")
    if label is not None and not label:
        raise ValueError("label filter must be non-empty when given")
    stmts = _statements(model_version is not None, label is not None, job_id is not None)
    params: dict[str, Any] = {"b_annotator": annotator}
    if model_version is not None:
        params["f_version"] = model_version
    if label is not None:
        params.update(f_label=label, f_label_threshold=label_threshold)
    if job_id is not None:
        params["f_job"] = job_id
    for _ in range(_MAX_CLAIM_ATTEMPTS):
        params["now"] = clock = time.time() if now is None else now
        with store.engine.connect() as conn:
            held = conn.execute(stmts.held, params).first()
        if held is not None:
            return Lease(*held)
        with store.engine.begin() as conn:
            row = conn.execute(stmts.claim, {**params, "b_expires_at": clock + lease_seconds})
            claimed = row.first()
        if claimed is not None:
            return Lease(*claimed)
        # Nothing claimed: the queue is empty, or (PostgreSQL) every candidate was
        # locked by a concurrent claim at that instant. Only the latter is retried.
        with store.engine.connect() as conn:
            if conn.execute(stmts.candidate, params).first() is None:
                return None
    return None


def _lease(store: Store, item_id: str) -> Lease:
    query = select(
        t.items.c.item_id, t.items.c.leased_by, t.items.c.lease_expires_at, t.items.c.score
    ).where(t.items.c.item_id == item_id)
    with store.engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"item {item_id!r} not found")
    return Lease(*row)


def heartbeat(
    store: Store, item_id: str, annotator: str, *, lease_seconds: float, now: float | None = None
) -> Lease:
    """Extend a live lease held by ``annotator``; a lost lease is a ``LookupError``."""
    if not math.isfinite(lease_seconds) or lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be a positive number, got {lease_seconds}")
    clock = time.time() if now is None else now
    with store.engine.begin() as conn:
        changed = conn.execute(
            update(t.items)
            .where(
                and_(
                    t.items.c.item_id == item_id,
                    t.items.c.leased_by == annotator,
                    t.items.c.lease_expires_at >= clock,
                )
            )
            .values(lease_expires_at=clock + lease_seconds)
        ).rowcount
    if changed != 1:
        raise NotFoundError(f"{annotator!r} holds no live lease on item {item_id!r}")
    return _lease(store, item_id)


def release(store: Store, item_id: str, annotator: str) -> bool:
    """Give a lease back without feedback; returns whether one was held."""
    with store.engine.begin() as conn:
        changed = conn.execute(
            update(t.items)
            .where(t.items.c.item_id == item_id, t.items.c.leased_by == annotator)
            .values(leased_by=None, lease_expires_at=None)
        ).rowcount
    return changed == 1


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
    rows: list[dict[str, Any]] = []
    for item_id, score in zip(item_ids, scores, strict=True):
        value = float(score)
        if not math.isfinite(value):
            raise ValueError(f"score for item {item_id!r} is not finite: {score!r}")
        rows.append({"b_item_id": item_id, "b_score": value, "b_version": model_version})
    if len(set(item_ids)) != len(item_ids):
        raise ValueError("item_ids must be distinct")
    values: dict[str, Any] = {"score": bindparam("b_score")}
    if model_version is not None:
        values["score_model_version"] = bindparam("b_version")
    stmt = update(t.items).where(t.items.c.item_id == bindparam("b_item_id")).values(**values)
    sane_rowcount = store.engine.dialect.supports_sane_multi_rowcount
    updated = 0
    with store.engine.begin() as conn:
        for lo in range(0, len(rows), _RESCORE_CHUNK):
            chunk = rows[lo : lo + _RESCORE_CHUNK]
            result = conn.execute(stmt, chunk)
            if sane_rowcount:
                updated += int(result.rowcount)
            else:
                updated += _count_existing(conn, [str(r["b_item_id"]) for r in chunk])
    return updated


def _count_existing(conn: Any, item_ids: list[str]) -> int:
    total = 0
    for lo in range(0, len(item_ids), 500):
        part = item_ids[lo : lo + 500]
        query = select(func.count()).select_from(t.items).where(t.items.c.item_id.in_(part))
        total += int(conn.execute(query).scalar_one())
    return total


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
    item = t.items.c
    if fb.suggestion_id is None and fb.action == "skip":
        lowered = item.score - func.abs(item.score) * (1.0 - skip_factor)
        where = [item.item_id == fb.item_id, item.labeled == false(), item.score.is_not(None)]
        return "lowered" if _update_items(store, where, {"score": lowered}) else "none"
    if fb.suggestion_id is None:
        where = [item.item_id == fb.item_id, item.machine_labeled == true()]
        return "confirmed" if _update_items(store, where, {"machine_labeled": False}) else "none"
    if fb.action in ("edit", "reject"):
        where = [item.item_id == fb.item_id, item.machine_labeled == true()]
        values = {"labeled": False, "machine_labeled": False}
        return "requeued" if _update_items(store, where, values) else "none"
    return "none"


def _update_items(store: Store, where: list[ColumnElement[bool]], values: dict[str, Any]) -> bool:
    with store.engine.begin() as conn:
        return bool(conn.execute(update(t.items).where(*where).values(**values)).rowcount)
