"""The queue's SQL: serving order, the one-statement claim, leases, scores.

Serving order is ``items.score`` descending (higher = label first), ties by
``item_id``. An item can be served when it is unlabeled, scored, and nobody
holds a live lease on it; the partial index ``ix_items_ready`` holds exactly
the unlabeled, scored rows in serving order, so a claim reads the first few
index entries instead of sorting the backlog.

**One annotator per item.** ``lease_next`` claims in a single statement,
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

The policy around it (what a decision does to the queue, argument checks)
is ``engine.review.queue``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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

from engine.store import schema as t
from engine.store.base import NotFoundError
from engine.store.batches import BatchQueries
from engine.store.consensus import ConsensusQueries
from engine.store.records import ImageRow, Lease

_MAX_CLAIM_ATTEMPTS = 5
_RESCORE_CHUNK = 5000
_ITEM = t.items.c
_LEASE_COLUMNS = (_ITEM.item_id, _ITEM.leased_by, _ITEM.lease_expires_at, _ITEM.score)


@dataclass(frozen=True)
class QueueFilter:
    """Optional conditions of ``lease_next`` (combined with AND; see ``review.queue``)."""

    model_version: str | None = None
    label: str | None = None
    label_threshold: float = 0.0
    job_id: str | None = None

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.model_version is not None:
            out["f_version"] = self.model_version
        if self.label is not None:
            out.update(f_label=self.label, f_label_threshold=self.label_threshold)
        if self.job_id is not None:
            out["f_job"] = self.job_id
        return out


def _free() -> ColumnElement[bool]:
    return or_(_ITEM.lease_expires_at.is_(None), _ITEM.lease_expires_at < bindparam("now"))


def _ready() -> ColumnElement[bool]:
    # Literal predicates (no bound parameters) so SQLite matches ix_items_ready.
    return and_(_ITEM.labeled == false(), _ITEM.score.is_not(None))


def _single() -> ColumnElement[bool]:
    """Not a quality item: those are handed out by ``engine.store.consensus``."""
    q = t.quality_items.c
    return ~exists().where(q.item_id == _ITEM.item_id)


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
    scored: Any  # that item's score
    claim: Any  # lease that item in one compare-and-set UPDATE ... RETURNING


@functools.cache
def statements(by_version: bool, by_label: bool, by_job: bool) -> _Statements:
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
    servable = (_ready(), _free(), _single(), *filters)
    candidate = select(_ITEM.item_id).where(*servable).order_by(*order).limit(1)
    scored = select(_ITEM.score).where(*servable).order_by(*order).limit(1)
    best = candidate.with_for_update(skip_locked=True).scalar_subquery()
    claim = (
        update(t.items)
        .where(_ITEM.item_id == best, _ready(), _free(), _single())
        .values(leased_by=bindparam("b_annotator"), lease_expires_at=bindparam("b_expires_at"))
        .returning(*_LEASE_COLUMNS)
    )
    return _Statements(held, candidate, scored, claim)


class QueueQueries(ConsensusQueries, BatchQueries):
    def lease_next(
        self,
        annotator: str,
        lease_seconds: float,
        where: QueueFilter,
        now: float | None,
        *,
        gold_first: bool = False,
    ) -> Lease | None:
        """The annotator's live lease matching ``where``, else a newly claimed item.

        Without filters, quality items (``engine.store.consensus``) take part: a held
        assignment comes back first; while a calibration batch is open
        (``engine.store.batches``) only its items are served; ``gold_first`` tries a
        gold item the person has not had; an overlap item is claimed when it ranks at
        least as high as the best single-person item.
        """
        stmts = statements(
            where.model_version is not None, where.label is not None, where.job_id is not None
        )
        params: dict[str, Any] = {"b_annotator": annotator, **where.params()}
        unfiltered = not where.params()
        for _ in range(_MAX_CLAIM_ATTEMPTS):
            params["now"] = clock = time.time() if now is None else now
            with self.engine.connect() as conn:
                held = conn.execute(stmts.held, params).first()
            if held is not None:
                return Lease(*held)
            if unfiltered and self.has_quality_items():
                assigned = self.held_assignment(annotator, clock)
                if assigned is not None:
                    return assigned
                batch = self.open_batch_id()
                if batch is not None:  # calibration first: nothing else until it closes
                    return self.claim_quality(
                        annotator, "overlap", lease_seconds, clock, batch=batch
                    )
                quality = self._quality_lease(stmts, params, lease_seconds, gold_first)
                if quality is not None:
                    return quality
            with self.engine.begin() as conn:
                row = conn.execute(stmts.claim, {**params, "b_expires_at": clock + lease_seconds})
                claimed = row.first()
            if claimed is not None:
                return Lease(*claimed)
            # Nothing claimed: the queue is empty, or (PostgreSQL) every candidate was
            # locked by a concurrent claim at that instant. Only the latter is retried.
            with self.engine.connect() as conn:
                if conn.execute(stmts.candidate, params).first() is None:
                    return None
        return None

    def _quality_lease(
        self, stmts: _Statements, params: dict[str, Any], lease_seconds: float, gold_first: bool
    ) -> Lease | None:
        annotator, clock = str(params["b_annotator"]), float(params["now"])
        if gold_first:
            gold = self.claim_quality(annotator, "gold", lease_seconds, clock)
            if gold is not None:
                return gold
        overlap = self.quality_candidate(annotator, "overlap", clock)
        if overlap is None:
            return None
        with self.engine.connect() as conn:
            single = conn.execute(stmts.scored, params).first()
        if single is not None and (overlap[1] is None or overlap[1] < single[0]):
            return None
        return self.claim_quality(annotator, "overlap", lease_seconds, clock, first=overlap)

    def lease_of(self, item_id: str) -> Lease:
        """The item's lease columns as they are (holder and expiry may be ``None``)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(*_LEASE_COLUMNS).where(_ITEM.item_id == item_id)).first()
        if row is None:
            raise NotFoundError(f"item {item_id!r} not found")
        return Lease(*row)

    def extend_lease(self, item_id: str, annotator: str, expires_at: float, now: float) -> bool:
        """Move a live lease held by ``annotator`` to ``expires_at``; False if none is held."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(t.items)
                .where(
                    _ITEM.item_id == item_id,
                    _ITEM.leased_by == annotator,
                    _ITEM.lease_expires_at >= now,
                )
                .values(lease_expires_at=expires_at)
            ).rowcount
        return bool(changed == 1)

    def release_lease(self, item_id: str, annotator: str) -> bool:
        """Give a lease back; returns whether ``annotator`` held one."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(t.items)
                .where(_ITEM.item_id == item_id, _ITEM.leased_by == annotator)
                .values(leased_by=None, lease_expires_at=None)
            ).rowcount
        return bool(changed == 1)

    def set_scores(
        self, item_ids: Sequence[str], scores: Sequence[float], model_version: str | None
    ) -> int:
        """Set many queue scores in one transaction; returns how many items exist."""
        rows = [
            {"b_item_id": i, "b_score": float(s), "b_version": model_version}
            for i, s in zip(item_ids, scores, strict=True)
        ]
        values: dict[str, Any] = {"score": bindparam("b_score")}
        if model_version is not None:
            values["score_model_version"] = bindparam("b_version")
        stmt = update(t.items).where(_ITEM.item_id == bindparam("b_item_id")).values(**values)
        sane_rowcount = self.engine.dialect.supports_sane_multi_rowcount
        updated = 0
        with self.engine.begin() as conn:
            for lo in range(0, len(rows), _RESCORE_CHUNK):
                chunk = rows[lo : lo + _RESCORE_CHUNK]
                result = conn.execute(stmt, chunk)
                if sane_rowcount:
                    updated += int(result.rowcount)
                else:
                    updated += _count_existing(conn, [str(r["b_item_id"]) for r in chunk])
        return updated

    def lower_score(self, item_id: str, factor: float) -> bool:
        """``s -> s - |s| * (1 - factor)`` for an unlabeled scored item; whether it changed."""
        lowered = _ITEM.score - func.abs(_ITEM.score) * (1.0 - factor)
        where = [_ITEM.item_id == item_id, _ITEM.labeled == false(), _ITEM.score.is_not(None)]
        return self._update_items(where, {"score": lowered})

    def confirm_machine_label(self, item_id: str) -> bool:
        """A machine-labeled item becomes a human-labeled one; whether it was machine-labeled."""
        where = [_ITEM.item_id == item_id, _ITEM.machine_labeled == true()]
        return self._update_items(where, {"machine_labeled": False})

    def requeue_machine_label(self, item_id: str) -> bool:
        """A machine-labeled item goes back in the queue; whether it was machine-labeled."""
        where = [_ITEM.item_id == item_id, _ITEM.machine_labeled == true()]
        return self._update_items(where, {"labeled": False, "machine_labeled": False})

    def queued_images(
        self,
        count: int,
        *,
        free_only: bool = True,
        exclude: frozenset[str] = frozenset(),
        now: float | None = None,
    ) -> list[ImageRow]:
        """The first ``count`` image items of the queue (unlabeled, scored), best first.

        The order ``lease_next`` leases in, read without leasing anything.
        ``free_only``: only items nobody holds a live lease on (what the next
        ``/queue/next`` calls will hand out); else leased ones too. ``exclude``:
        item ids to leave out. Filters of ``/queue/next`` (model version, label,
        job) are not applied: this is the unfiltered ranking.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if count == 0:
            return []
        query = (
            select(_ITEM.item_id, _ITEM.uri, _ITEM.content_sha256)
            .where(
                _ITEM.labeled == false(),
                _ITEM.score.is_not(None),
                _ITEM.kind == "image",
                _ITEM.uri.is_not(None),
            )
            .order_by(_ITEM.score.desc(), _ITEM.item_id)
            .limit(count + len(exclude))
        )
        if free_only:
            clock = time.time() if now is None else now
            query = query.where(
                or_(_ITEM.lease_expires_at.is_(None), _ITEM.lease_expires_at < clock)
            )
        with self.engine.connect() as conn:
            rows = [ImageRow(*row) for row in conn.execute(query)]
        return [row for row in rows if row.item_id not in exclude][:count]

    def top_items(self, *, limit: int) -> list[tuple[str, float, str | None]]:
        """``(item_id, score, uri)`` of the highest-scored unlabeled items."""
        query = (
            select(_ITEM.item_id, _ITEM.score, _ITEM.uri)
            .where(_ITEM.labeled.is_(False), _ITEM.score.is_not(None))
            .order_by(_ITEM.score.desc(), _ITEM.item_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(row.item_id, float(row.score), row.uri) for row in conn.execute(query)]

    def queue_rank(self, item_id: str, score: float | None) -> int | None:
        """1 + how many unlabeled scored items are served before this one (leased or not)."""
        if score is None:
            return None
        ahead = or_(_ITEM.score > score, and_(_ITEM.score == score, _ITEM.item_id < item_id))
        query = select(func.count()).select_from(t.items).where(_ready(), ahead)
        with self.engine.connect() as conn:
            return 1 + int(conn.execute(query).scalar_one())

    def queue_counts(self) -> tuple[int, int]:
        """``(labeled, remaining)``: items with a final decision, items still to label."""
        query = select(
            func.count().filter(_ITEM.labeled == true()),
            func.count().filter(_ITEM.labeled == false()),
        ).select_from(t.items)
        with self.engine.connect() as conn:
            labeled, remaining = conn.execute(query).one()
        return int(labeled), int(remaining)

    def _update_items(self, where: list[ColumnElement[bool]], values: dict[str, Any]) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(update(t.items).where(*where).values(**values)).rowcount)


def _count_existing(conn: Any, item_ids: list[str]) -> int:
    total = 0
    for lo in range(0, len(item_ids), 500):
        part = item_ids[lo : lo + 500]
        query = select(func.count()).select_from(t.items).where(_ITEM.item_id.in_(part))
        total += int(conn.execute(query).scalar_one())
    return total
