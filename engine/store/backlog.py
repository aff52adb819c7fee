"""Read-only views of the image backlog: what to encode, in which order.

``queued_images`` peeks at the labeling queue in serving order (score
descending, then ``item_id``: the order ``engine.review.queue.next_item`` leases in)
without leasing anything; ``all_images`` lists every image item by id. Both
return the columns an encoder needs, so no per-item query follows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import false, or_, select

from engine.store import Store
from engine.store import schema as t

_ITEM = t.items.c
_COLUMNS = (_ITEM.item_id, _ITEM.uri, _ITEM.content_sha256)


@dataclass(frozen=True)
class ImageRow:
    item_id: str
    uri: str
    content_sha256: str | None


def queued_images(
    store: Store,
    count: int,
    *,
    free_only: bool = True,
    exclude: frozenset[str] = frozenset(),
    now: float | None = None,
) -> list[ImageRow]:
    """The first ``count`` image items of the queue (unlabeled, scored), best first.

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
        select(*_COLUMNS)
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
        query = query.where(or_(_ITEM.lease_expires_at.is_(None), _ITEM.lease_expires_at < clock))
    with store.engine.connect() as conn:
        rows = [ImageRow(*row) for row in conn.execute(query)]
    return [row for row in rows if row.item_id not in exclude][:count]


def all_images(store: Store, limit: int | None = None) -> list[ImageRow]:
    """Every image item with a URI, by ``item_id`` (the first ``limit`` when given)."""
    query = (
        select(*_COLUMNS)
        .where(_ITEM.kind == "image", _ITEM.uri.is_not(None))
        .order_by(_ITEM.item_id)
    )
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as conn:
        return [ImageRow(*row) for row in conn.execute(query)]
