"""Calibration batches: the batch rows, and what drawing one reads (embeddings, classes).

A batch's items are overlap items (``engine.store.consensus``) carrying its id;
while a batch is open ``lease_next`` serves only its items. The draw itself
(k-center or stratified) is ``engine.quality.calibration``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import func, or_, select, update

from engine.store import schema as t
from engine.store.base import NotFoundError, StoreCore, now_utc
from engine.store.records import Batch, batch_of

_B = t.batches.c
_P = t.predictions.c
_S = t.suggestions.c
_ID_CHUNK = 500


class BatchQueries(StoreCore):
    def create_batch(self, batch_id: str, kind: str, items: Sequence[dict[str, Any]]) -> Batch:
        """The batch row and its overlap items (rows of ``quality_items``), in one transaction."""
        created = now_utc()
        with self.engine.begin() as conn:
            conn.execute(
                t.batches.insert().values(
                    batch_id=batch_id, kind=kind, state="open", created_at=created
                )
            )
            rows = [{"created_at": created, "batch": batch_id, **row} for row in items]
            if rows:
                conn.execute(t.quality_items.insert(), rows)
        return self.batch(batch_id)

    def batch(self, batch_id: str) -> Batch:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.batches).where(_B.batch_id == batch_id)).first()
        if row is None:
            raise NotFoundError(f"batch {batch_id!r} not found")
        return batch_of(row)

    def batches(self) -> list[Batch]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.batches).order_by(_B.created_at, _B.batch_id))
            return [batch_of(row) for row in rows]

    def open_batch_id(self) -> str | None:
        """The oldest open calibration batch, if any (the queue serves only it)."""
        query = (
            select(_B.batch_id)
            .where(_B.state == "open")
            .order_by(_B.created_at, _B.batch_id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def close_batch(self, batch_id: str, by: str) -> Batch:
        self.batch(batch_id)
        with self.engine.begin() as conn:
            conn.execute(
                update(t.batches)
                .where(_B.batch_id == batch_id)
                .values(state="closed", closed_at=now_utc(), closed_by=by)
            )
        return self.batch(batch_id)

    def count_batches(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.batches)).scalar_one())

    def latest_embeddings(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Each item's newest stored prediction embedding (float32), where it has one."""
        out: dict[str, np.ndarray] = {}
        ids = list(item_ids)
        extras = t.prediction_extras.c
        joined = t.predictions.outerjoin(
            t.prediction_extras, extras.prediction_id == _P.prediction_id
        )
        with self.engine.connect() as conn:
            for lo in range(0, len(ids), _ID_CHUNK):
                chunk = ids[lo : lo + _ID_CHUNK]
                query = (
                    select(_P.item_id, _P.embedding, extras.embedding_f16)
                    .select_from(joined)
                    .where(
                        _P.item_id.in_(chunk),
                        or_(_P.embedding.is_not(None), extras.embedding_f16.is_not(None)),
                    )
                    .order_by(_P.prediction_id)
                )
                for row in conn.execute(query):
                    if row.embedding_f16 is not None:
                        vector = np.frombuffer(row.embedding_f16, dtype=np.float16)
                        out[row.item_id] = vector.astype(np.float32)
                    else:  # written before prediction_extras existed
                        out[row.item_id] = np.frombuffer(row.embedding, dtype=np.float32)
        return out

    def top_labels(self, item_ids: Sequence[str]) -> dict[str, str]:
        """Each item's most confident suggested label (its newest prediction's best)."""
        out: dict[str, tuple[int, float, str]] = {}
        ids = list(item_ids)
        with self.engine.connect() as conn:
            for lo in range(0, len(ids), _ID_CHUNK):
                chunk = ids[lo : lo + _ID_CHUNK]
                query = select(_S.item_id, _S.prediction_id, _S.score, _S.label).where(
                    _S.item_id.in_(chunk)
                )
                for row in conn.execute(query):
                    key = (int(row.prediction_id), float(row.score), str(row.label))
                    if row.item_id not in out or key[:2] > out[row.item_id][:2]:
                        out[row.item_id] = key
        return {item_id: value[2] for item_id, value in out.items()}
