"""Items: ingest (idempotent), look-ups, pages over the backlog."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import func, select

from engine.store import schema as t
from engine.store.base import NotFoundError, StoreCore, now_utc
from engine.store.records import ImageRow, item_of
from engine.types import Item

_ITEM = t.items.c
_PAGE = 1000


class ItemQueries(StoreCore):
    def add_items(self, items: Sequence[Item], content_sha256: Sequence[str | None]) -> int:
        """Insert items not already present; returns how many were new."""
        if len(content_sha256) != len(items):
            raise ValueError("content_sha256 must align with items")
        now = now_utc()
        rows = [
            {
                "item_id": item.item_id,
                "kind": item.kind,
                "uri": item.uri,
                "text": item.text,
                "content_sha256": digest,
                "metadata": dict(item.metadata),
                "created_at": now,
                "labeled": False,
            }
            for item, digest in zip(items, content_sha256, strict=True)
        ]
        with self.engine.begin() as conn:
            return self._insert_ignore(conn, t.items, rows)

    def get_item(self, item_id: str) -> Item:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.items).where(_ITEM.item_id == item_id)).first()
        if row is None:
            raise NotFoundError(f"item {item_id!r} not found")
        return item_of(row)

    def content_sha256(self, item_id: str) -> str | None:
        """The sha256 recorded at ingest (``None`` for items ingested without one)."""
        query = select(_ITEM.content_sha256).where(_ITEM.item_id == item_id)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def item_score(self, item_id: str) -> float | None:
        """The item's queue score (higher = label first); ``None`` when unscored."""
        with self.engine.connect() as conn:
            score = conn.execute(
                select(_ITEM.score).where(_ITEM.item_id == item_id)
            ).scalar_one_or_none()
        return None if score is None else float(score)

    def find_item_ids(
        self, *, uri: str | None = None, text: str | None = None, limit: int = 2
    ) -> list[str]:
        """Ids of items whose ``uri`` or ``text`` equals the given one (a scan: for rare
        look-ups by content, such as an editor's task without our item id)."""
        if uri is None and text is None:
            raise ValueError("find_item_ids needs a uri or a text")
        column, value = (_ITEM.uri, uri) if uri is not None else (_ITEM.text, text)
        query = select(_ITEM.item_id).where(column == value).order_by(_ITEM.item_id)
        with self.engine.connect() as conn:
            return list(conn.execute(query.limit(limit)).scalars())

    def list_items(
        self, *, offset: int = 0, limit: int = 100, kind: str | None = None
    ) -> list[Item]:
        query = select(t.items).order_by(_ITEM.item_id).offset(offset).limit(limit)
        if kind is not None:
            query = query.where(_ITEM.kind == kind)
        with self.engine.connect() as conn:
            return [item_of(row) for row in conn.execute(query)]

    def count_items(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.items)).scalar_one())

    def iter_items(self, *, kind: str | None = None, batch_size: int = _PAGE) -> Iterator[Item]:
        """All items in id order, fetched in pages (for jobs over large backlogs)."""
        for row in self._pages(select(t.items), kind, batch_size):
            yield item_of(row)

    def iter_item_rows(self, kind: str, *, batch_size: int = _PAGE) -> Iterator[Any]:
        """``item_id, uri, text, content_sha256`` of every item of ``kind``, in id order."""
        query = select(_ITEM.item_id, _ITEM.uri, _ITEM.text, _ITEM.content_sha256)
        return self._pages(query, kind, batch_size)

    def all_images(self, limit: int | None = None) -> list[ImageRow]:
        """Every image item with a URI, by ``item_id`` (the first ``limit`` when given)."""
        query = (
            select(_ITEM.item_id, _ITEM.uri, _ITEM.content_sha256)
            .where(_ITEM.kind == "image", _ITEM.uri.is_not(None))
            .order_by(_ITEM.item_id)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [ImageRow(*row) for row in conn.execute(query)]

    def _pages(self, query: Any, kind: str | None, batch_size: int) -> Iterator[Any]:
        last = ""
        while True:
            page = query.where(_ITEM.item_id > last).order_by(_ITEM.item_id).limit(batch_size)
            if kind is not None:
                page = page.where(_ITEM.kind == kind)
            with self.engine.connect() as conn:
                rows = conn.execute(page).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].item_id
