"""Quality items (consensus overlap, gold) and their assignments: who holds, who finished.

An overlap item is served to up to ``k`` distinct people; a gold item to every
annotator once. Neither goes through the single-person claim of
``engine.store.queue`` (its statements exclude them). A claim here inserts an
``assignments`` row in one transaction: first dropping the item's expired,
unfinished rows, then taking the lowest free ``slot`` (overlap) or no slot
(gold). The unique constraints (item, slot) and (item, person) are the
guarantee on SQLite and PostgreSQL alike: a concurrent claim of the same place
fails with an integrity error and tries the next candidate, so no item is ever
held or finished by more than ``k`` people, nor twice by one.

Feedback on a quality item (``engine.store.feedback``) sets no suggestion
status and no ``labeled`` flag, so nobody sees another person's decision; an
item-level accept / edit / reject finishes the person's assignment, a skip
gives it back. The policy (which items, resolution, gold mixing) is
``engine.quality.consensus``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, exists, false, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from engine.store import schema as t
from engine.store.base import StoreCore, now_utc
from engine.store.records import (
    Assignment,
    Lease,
    QualityItem,
    assignment_of,
    quality_item_of,
)

_MAX_CLAIM_ATTEMPTS = 8
_HEAD_ROWS = 2000  # queue rows read for an overlap item before sorting them all
_Q = t.quality_items.c
_A = t.assignments.c
_ITEM = t.items.c


def is_quality_item(conn: Any, item_id: str) -> bool:
    """Inside a store transaction: is ``item_id`` an overlap or gold item?"""
    return conn.execute(select(_Q.item_id).where(_Q.item_id == item_id)).first() is not None


def record_assignment_decision(conn: Any, item_id: str, annotator: str, action: str) -> None:
    """An item-level decision on a quality item: finish (accept / edit / reject) or give
    back (skip) the person's assignment. A decision without an assignment (a reviewer,
    an editor that does not lease) changes none."""
    mine = and_(_A.item_id == item_id, _A.annotator == annotator, _A.done_at.is_(None))
    if action == "skip":
        conn.execute(delete(t.assignments).where(mine))
    else:
        conn.execute(update(t.assignments).where(mine).values(done_at=now_utc().timestamp()))


def _counts(now_s: float) -> Any:
    """Correlated: how many places of the item are taken (finished or live)."""
    taken = or_(_A.done_at.is_not(None), _A.expires_at >= now_s)
    return (
        select(func.count())
        .where(_A.item_id == _ITEM.item_id, taken)
        .correlate(t.items)
        .scalar_subquery()
    )


def _not_mine(annotator: str, now_s: float) -> Any:
    mine = exists().where(
        _A.item_id == _ITEM.item_id,
        _A.annotator == annotator,
        or_(_A.done_at.is_not(None), _A.expires_at >= now_s),
    )
    return ~mine


class ConsensusQueries(StoreCore):
    def add_quality_items(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert quality items (keys of ``schema.quality_items``) that are not one yet."""
        created = now_utc()
        full = [{"created_at": created, "batch": None, **row} for row in rows]
        with self.engine.begin() as conn:
            return self._insert_ignore(conn, t.quality_items, full)

    def mark_gold(self, rows: Sequence[dict[str, Any]]) -> int:
        """Make items gold (rows: ``item_id``, ``final_labels``, ``resolved_by``); each is
        unlabeled again so that it looks like any other item in an annotator's queue."""
        created = now_utc()
        full = [
            {
                "role": "gold",
                "k": None,
                "state": "final",
                "resolution": "gold",
                "batch": None,
                "created_at": created,
                "resolved_at": created,
                **row,
            }
            for row in rows
        ]
        with self.engine.begin() as conn:
            added = self._insert_ignore(conn, t.quality_items, full)
            ids = [row["item_id"] for row in rows]
            conn.execute(
                update(t.items)
                .where(_ITEM.item_id.in_(ids))
                .values(labeled=False, machine_labeled=False, leased_by=None, lease_expires_at=None)
            )
        return added

    def single_unlabeled_ids(self) -> list[str]:
        """Unlabeled items that are not quality items yet, in id order."""
        query = (
            select(_ITEM.item_id)
            .where(_ITEM.labeled.is_(False), ~exists().where(_Q.item_id == _ITEM.item_id))
            .order_by(_ITEM.item_id)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def has_quality_items(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(_Q.item_id).limit(1)).first() is not None

    def quality_item(self, item_id: str) -> QualityItem | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.quality_items).where(_Q.item_id == item_id)).first()
        return None if row is None else quality_item_of(row)

    def quality_items(
        self, *, role: str | None = None, state: str | None = None, batch: str | None = None
    ) -> list[QualityItem]:
        query = select(t.quality_items).order_by(_Q.item_id)
        if role is not None:
            query = query.where(_Q.role == role)
        if state is not None:
            query = query.where(_Q.state == state)
        if batch is not None:
            query = query.where(_Q.batch == batch)
        with self.engine.connect() as conn:
            return [quality_item_of(row) for row in conn.execute(query)]

    def assignments(
        self, *, item_id: str | None = None, annotator: str | None = None
    ) -> list[Assignment]:
        query = select(t.assignments).order_by(_A.assignment_id)
        if item_id is not None:
            query = query.where(_A.item_id == item_id)
        if annotator is not None:
            query = query.where(_A.annotator == annotator)
        with self.engine.connect() as conn:
            return [assignment_of(row) for row in conn.execute(query)]

    def held_assignment(self, annotator: str, now_s: float) -> Lease | None:
        """The person's live, unfinished quality assignment (oldest first)."""
        query = (
            select(_A.item_id, _A.annotator, _A.expires_at, _ITEM.score)
            .join_from(t.assignments, t.items, _A.item_id == _ITEM.item_id)
            .where(_A.annotator == annotator, _A.done_at.is_(None), _A.expires_at >= now_s)
            .order_by(_A.leased_at, _A.item_id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else Lease(*row)

    def quality_candidate(
        self, annotator: str, role: str, now_s: float
    ) -> tuple[str, float | None] | None:
        """The best quality item of ``role`` the person may be handed now: ``(id, score)``."""
        found = self._candidates(annotator, role, now_s, limit=1)
        return found[0] if found else None

    def _candidates(
        self, annotator: str, role: str, now_s: float, *, limit: int, batch: str | None = None
    ) -> list[tuple[str, float | None]]:
        quality: list[Any] = [_Q.item_id == _ITEM.item_id, _Q.role == role]
        if role == "overlap":  # gold items are final from the start and never close
            quality += [_Q.state == "open", _counts(now_s) < _Q.k]
        if batch is not None:
            quality.append(_Q.batch == batch)
        # Scored only, like the single-person queue: an unscored item would stand out.
        where = [_ITEM.score.is_not(None), _not_mine(annotator, now_s)]
        order = (_ITEM.score.desc(), _ITEM.item_id)
        with self.engine.connect() as conn:
            if role == "overlap":
                # Overlap items are a share of the backlog: the first one the person may
                # take is usually near the head of the queue. Walk the single-person
                # queue's index (ix_items_ready) down to the score of its _HEAD_ROWS-th
                # row; only when nothing qualifies there, sort every open overlap item.
                ready = (_ITEM.labeled == false(), _ITEM.score.is_not(None))
                cutoff = conn.execute(
                    select(_ITEM.score).where(*ready).order_by(*order).offset(_HEAD_ROWS).limit(1)
                ).scalar_one_or_none()
                walk = [*ready, exists().where(*quality), *where]
                if cutoff is not None:
                    walk.append(_ITEM.score >= cutoff)
                near = select(_ITEM.item_id, _ITEM.score).where(*walk).order_by(*order)
                found = conn.execute(near.limit(limit)).all()
                if found or cutoff is None:
                    return [(row.item_id, row.score) for row in found]
            query = (
                select(_ITEM.item_id, _ITEM.score)
                .join_from(t.quality_items, t.items, _Q.item_id == _ITEM.item_id)
                .where(*quality, *where)
                .order_by(*order)
                .limit(limit)
            )
            return [(row.item_id, row.score) for row in conn.execute(query)]

    def claim_quality(
        self,
        annotator: str,
        role: str,
        lease_seconds: float,
        now_s: float,
        *,
        batch: str | None = None,
        first: tuple[str, float | None] | None = None,
    ) -> Lease | None:
        """Hand the person the best quality item of ``role`` (of ``batch``, when given);
        ``None`` when there is none. ``first``: the candidate the caller just read
        (``quality_candidate``), tried before reading again."""
        for attempt in range(_MAX_CLAIM_ATTEMPTS):
            if attempt == 0 and first is not None:
                found = [first]
            else:
                found = self._candidates(annotator, role, now_s, limit=1, batch=batch)
            if not found:
                return None
            item_id, score = found[0]
            try:
                with self.engine.begin() as conn:
                    taken = self._take_place(conn, item_id, annotator, role, now_s, lease_seconds)
            except IntegrityError:
                continue  # a concurrent claim took that place first
            if taken:
                return Lease(item_id, annotator, now_s + lease_seconds, score)
        return None

    def _take_place(
        self, conn: Any, item_id: str, annotator: str, role: str, now_s: float, lease_s: float
    ) -> bool:
        stale = and_(_A.item_id == item_id, _A.done_at.is_(None), _A.expires_at < now_s)
        conn.execute(delete(t.assignments).where(stale))
        slot: int | None = None
        if role == "overlap":
            k = conn.execute(select(_Q.k).where(_Q.item_id == item_id)).scalar_one()
            used = set(conn.execute(select(_A.slot).where(_A.item_id == item_id)).scalars())
            free = [s for s in range(int(k)) if s not in used]
            if not free:
                return False
            slot = free[0]
        conn.execute(
            insert(t.assignments).values(
                item_id=item_id,
                annotator=annotator,
                slot=slot,
                leased_at=now_s,
                expires_at=now_s + lease_s,
            )
        )
        return True

    def extend_assignment(
        self, item_id: str, annotator: str, expires_at: float, now_s: float
    ) -> bool:
        live = and_(
            _A.item_id == item_id,
            _A.annotator == annotator,
            _A.done_at.is_(None),
            _A.expires_at >= now_s,
        )
        with self.engine.begin() as conn:
            changed = conn.execute(update(t.assignments).where(live).values(expires_at=expires_at))
        return bool(changed.rowcount == 1)

    def release_assignment(self, item_id: str, annotator: str) -> bool:
        """Give an unfinished assignment back; whether the person held one."""
        mine = and_(_A.item_id == item_id, _A.annotator == annotator, _A.done_at.is_(None))
        with self.engine.begin() as conn:
            return bool(conn.execute(delete(t.assignments).where(mine)).rowcount)

    def set_quality_state(
        self,
        item_id: str,
        *,
        state: str,
        final_labels: Sequence[dict[str, Any]] | None = None,
        resolution: str | None = None,
        resolved_by: str | None = None,
    ) -> None:
        """Move a quality item to ``state``; ``final`` also marks the item labeled."""
        values: dict[str, Any] = {"state": state}
        if state == "final":
            values.update(
                final_labels=list(final_labels or ()),
                resolution=resolution,
                resolved_by=resolved_by,
                resolved_at=now_utc(),
            )
        with self.engine.begin() as conn:
            conn.execute(update(t.quality_items).where(_Q.item_id == item_id).values(**values))
            if state == "final":
                conn.execute(update(t.items).where(_ITEM.item_id == item_id).values(labeled=True))
