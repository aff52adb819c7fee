"""The labeling queue: the highest-scored unlabeled item, leased to one annotator.

``next_item`` is a single compare-and-set ``UPDATE``: it claims the best item
whose lease is free or expired, and re-checks that condition on the row it
writes, so two annotators can never hold the same item. An annotator asking
again while holding a live lease gets the same item back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, update

from engine import schema as t
from engine.store import NotFoundError, Store

_MAX_CLAIM_ATTEMPTS = 20


@dataclass(frozen=True)
class Lease:
    item_id: str
    annotator: str
    expires_at: float  # epoch seconds
    score: float | None


def _free(now: float):  # type: ignore[no-untyped-def]
    return or_(t.items.c.lease_expires_at.is_(None), t.items.c.lease_expires_at < now)


def next_item(
    store: Store,
    annotator: str,
    *,
    lease_seconds: float,
    model_version: str | None = None,
    now: float | None = None,
) -> Lease | None:
    """Lease the best unlabeled, scored item to ``annotator``; ``None`` when empty."""
    if not annotator:
        raise ValueError("annotator must be non-empty")
    if lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
    held = _held_by(store, annotator, time.time() if now is None else now)
    if held is not None:
        return held
    for _ in range(_MAX_CLAIM_ATTEMPTS):
        clock = time.time() if now is None else now
        candidate = _best_candidate(store, clock, model_version)
        if candidate is None:
            return None
        expires_at = clock + lease_seconds
        with store.engine.begin() as conn:
            claimed = conn.execute(
                update(t.items)
                .where(t.items.c.item_id == candidate, t.items.c.labeled.is_(False), _free(clock))
                .values(leased_by=annotator, lease_expires_at=expires_at)
            ).rowcount
        if claimed == 1:
            return _lease(store, candidate)
    return None


def _best_candidate(store: Store, now: float, model_version: str | None) -> str | None:
    query = (
        select(t.items.c.item_id)
        .where(t.items.c.labeled.is_(False), t.items.c.score.is_not(None), _free(now))
        .order_by(t.items.c.score.desc(), t.items.c.item_id)
        .limit(1)
    )
    if model_version is not None:
        query = query.where(t.items.c.score_model_version == model_version)
    with store.engine.connect() as conn:
        return conn.execute(query).scalar_one_or_none()


def _held_by(store: Store, annotator: str, now: float) -> Lease | None:
    query = (
        select(t.items.c.item_id)
        .where(
            t.items.c.leased_by == annotator,
            t.items.c.lease_expires_at >= now,
            t.items.c.labeled.is_(False),
        )
        .limit(1)
    )
    with store.engine.connect() as conn:
        item_id = conn.execute(query).scalar_one_or_none()
    return None if item_id is None else _lease(store, item_id)


def _lease(store: Store, item_id: str) -> Lease:
    query = select(
        t.items.c.item_id, t.items.c.leased_by, t.items.c.lease_expires_at, t.items.c.score
    ).where(t.items.c.item_id == item_id)
    with store.engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"item {item_id!r} not found")
    return Lease(row.item_id, row.leased_by, row.lease_expires_at, row.score)


def heartbeat(
    store: Store, item_id: str, annotator: str, *, lease_seconds: float, now: float | None = None
) -> Lease:
    """Extend a live lease held by ``annotator``; a lost lease is a ``LookupError``."""
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
