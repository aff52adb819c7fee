"""What re-ranking reads back: stored predictions whole, with embeddings and signals.

``save_extras`` writes a prediction's embedding (float16) and named signal
arrays (one ``.npz``, loaded without pickle) beside it; ``ranked_backlog``
pages through the unlabeled items' scoring predictions (the one whose version
set ``items.score``), rebuilt as ``engine.types.Prediction`` so the queue's
scoring rules run on them exactly as at pre-label time, without the model.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, false, insert, select, update

from engine.store import schema as t
from engine.store.items import ItemQueries
from engine.store.records import suggestion_of
from engine.types import Prediction

_PRED = t.predictions.c
_EXTRA = t.prediction_extras.c
_ITEM = t.items.c
_SUG = t.suggestions.c
_META_CHARS = 256


@dataclass(frozen=True)
class StoredPrediction:
    """An item's scoring prediction as stored (``queue_score`` of ``prediction``)."""

    item_id: str
    kind: str
    prediction_id: int
    prediction: Prediction
    item_score: float | None


def pack_signals(signals: Mapping[str, npt.NDArray[Any]]) -> bytes | None:
    """The signals as compressed ``.npz`` bytes (floats as float16 when they fit), or None."""
    if not signals:
        return None
    buffer = io.BytesIO()
    arrays = {name: _compact(value) for name, value in signals.items()}
    np.savez_compressed(buffer, allow_pickle=False, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def unpack_signals(blob: bytes | None) -> dict[str, npt.NDArray[Any]]:
    if not blob:
        return {}
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _compact(value: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if value.dtype.kind == "f" and value.size and np.abs(value).max() < 6.0e4:
        return value.astype(np.float16)
    return value


def extras_row(prediction_id: int, prediction: Prediction) -> dict[str, Any] | None:
    """The ``prediction_extras`` row of a prediction, None when it has nothing to add."""
    signals = pack_signals(prediction.signals)
    embedding = prediction.embedding
    if embedding is None and signals is None:
        return None
    return {
        "prediction_id": prediction_id,
        "embedding_f16": None if embedding is None else embedding.astype(np.float16).tobytes(),
        "signals_npz": signals,
    }


class RankingQueries(ItemQueries):
    def meta_value(self, key: str) -> str | None:
        """A setting kept in the database (``meta``), None when unset."""
        with self.engine.connect() as conn:
            value = conn.execute(select(t.meta.c.value).where(t.meta.c.key == key))
            return value.scalar_one_or_none()

    def set_meta_value(self, key: str, value: str) -> None:
        if len(value) > _META_CHARS:
            raise ValueError(f"meta value for {key!r} is {len(value)} chars, over {_META_CHARS}")
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(t.meta).where(t.meta.c.key == key).values(value=value)
            ).rowcount
            if not changed:
                self._insert_ignore(conn, t.meta, [{"key": key, "value": value}])

    def save_extras(self, conn: Any, prediction_id: int, prediction: Prediction) -> None:
        row = extras_row(prediction_id, prediction)
        if row is not None:
            conn.execute(insert(t.prediction_extras), [row])

    def ranked_backlog(
        self, *, after: str = "", page: int = 500, kinds: tuple[str, ...] = ("image", "text")
    ) -> Iterator[list[StoredPrediction]]:
        """Pages of unlabeled items' scoring predictions, by item id, after ``after``."""
        last = after
        while True:
            scoring = and_(
                _PRED.item_id == _ITEM.item_id, _PRED.model_version == _ITEM.score_model_version
            )
            query = (
                _stored_select(scoring)
                .where(_ITEM.labeled == false(), _ITEM.item_id > last, _ITEM.kind.in_(kinds))
                .order_by(_ITEM.item_id)
                .limit(page)
            )
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
                ids = [int(r.prediction_id) for r in rows]
                suggestions = conn.execute(
                    select(t.suggestions)
                    .where(_SUG.prediction_id.in_(ids))
                    .order_by(_SUG.prediction_id, _SUG.position)
                ).all()
            if not rows:
                return
            by_prediction: dict[int, list[Any]] = {}
            for row in suggestions:
                by_prediction.setdefault(int(row.prediction_id), []).append(row)
            yield [_stored(r, by_prediction.get(int(r.prediction_id), [])) for r in rows]
            last = rows[-1].item_id

    def stored_prediction(self, item_id: str) -> StoredPrediction | None:
        """The item's scoring prediction (else its newest), or None without one."""
        item = self.get_item(item_id)
        query = (
            _stored_select(_PRED.item_id == _ITEM.item_id)
            .where(_ITEM.item_id == item.item_id)
            .order_by(
                (_PRED.model_version == _ITEM.score_model_version).desc(),
                _PRED.prediction_id.desc(),
            )
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            suggestions = conn.execute(
                select(t.suggestions)
                .where(_SUG.prediction_id == row.prediction_id)
                .order_by(_SUG.position)
            ).all()
        return _stored(row, list(suggestions))


def _stored_select(on: Any) -> Any:
    """Items joined to their predictions ``on`` a condition, with the extras."""
    joined = t.items.join(t.predictions, on).outerjoin(
        t.prediction_extras, _EXTRA.prediction_id == _PRED.prediction_id
    )
    return select(
        _ITEM.item_id,
        _ITEM.kind,
        _ITEM.score.label("item_score"),
        t.predictions,
        _EXTRA.embedding_f16,
        _EXTRA.signals_npz,
    ).select_from(joined)


def _stored(row: Any, suggestion_rows: list[Any]) -> StoredPrediction:
    n_classes = len(row.class_names)
    flat = np.frombuffer(row.probs, dtype=np.float32)
    probs = (
        flat.reshape(-1, n_classes)
        if n_classes
        else np.zeros((len(suggestion_rows), 0), dtype=np.float32)
    )
    embedding = (
        None
        if row.embedding_f16 is None
        else np.frombuffer(row.embedding_f16, dtype=np.float16).astype(np.float32)
    )
    if embedding is None and row.embedding is not None:  # written before prediction_extras
        embedding = np.frombuffer(row.embedding, dtype=np.float32)
    prediction = Prediction(
        item_id=row.item_id,
        model_name=row.model_name,
        model_version=row.model_version,
        suggestions=tuple(suggestion_of(s).suggestion for s in suggestion_rows),
        probs=probs,
        class_names=tuple(row.class_names),
        embedding=embedding,
        timings_ms=dict(row.timings_ms or {}),
        signals=unpack_signals(row.signals_npz),
    )
    score = None if row.item_score is None else float(row.item_score)
    return StoredPrediction(row.item_id, row.kind, int(row.prediction_id), prediction, score)
