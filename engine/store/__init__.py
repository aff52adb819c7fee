"""The store: items, predictions, suggestions, feedback over SQLAlchemy.

SQLite (WAL) by default, PostgreSQL by URL. Every write is idempotent where a
retry is plausible: re-ingesting an item, writing a prediction that already
exists for the same model version, posting feedback with the same client key.
Jobs and the queue live in ``engine.store.jobs`` and ``engine.review.queue`` on the same
``Store``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, create_engine, delete, event, func, insert, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from engine.store import schema as t
from engine.types import Feedback, Item, Prediction, Suggestion, region_from_dict


class StoreError(RuntimeError):
    """The database cannot be used (newer schema, bad URL...)."""


class NotFoundError(LookupError):
    """An item, suggestion or job does not exist."""


def _now() -> datetime:
    return datetime.now(UTC)


# A decision on a suggestion sets its status (skip leaves it as it is).
_STATUS_OF_ACTION = {"accept": "accepted", "edit": "edited", "reject": "rejected"}


@dataclass(frozen=True)
class SuggestionRecord:
    suggestion_id: int
    prediction_id: int
    item_id: str
    position: int
    status: str
    suggestion: Suggestion


@dataclass(frozen=True)
class FeedbackRecord:
    feedback_id: int
    created: bool  # False when the client key had been seen before
    feedback: Feedback


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40)


class Store:
    """All persistent state. Thread-safe: each call uses its own connection."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine = make_engine(url)
        self._migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    # -- schema ---------------------------------------------------------------

    def _migrate(self) -> None:
        t.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            row = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "schema_version"))
            found = row.scalar_one_or_none()
            if found is None:
                self._insert_ignore(conn, t.meta, [{"key": "schema_version", "value": "1"}])
                return
            if int(found) > t.SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.engine.url.render_as_string(hide_password=True)} has schema "
                    f"version {found}, newer than this engine supports ({t.SCHEMA_VERSION}); "
                    "upgrade labelengine or point LABELENGINE_DATABASE_URL elsewhere"
                )

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "schema_version"))
            return int(value.scalar_one())

    def _insert_ignore(self, conn: Any, table: Any, rows: list[dict[str, Any]]) -> int:
        """Insert rows, skipping those whose key exists; returns how many were new."""
        if not rows:
            return 0
        dialect = sqlite if self.dialect == "sqlite" else postgresql
        stmt = dialect.insert(table).on_conflict_do_nothing()
        return int(conn.execute(stmt, rows).rowcount or 0)

    # -- items ----------------------------------------------------------------

    def add_items(self, items: Sequence[Item], content_sha256: Sequence[str | None]) -> int:
        """Insert items not already present; returns how many were new."""
        if len(content_sha256) != len(items):
            raise ValueError("content_sha256 must align with items")
        now = _now()
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
            row = conn.execute(select(t.items).where(t.items.c.item_id == item_id)).first()
        if row is None:
            raise NotFoundError(f"item {item_id!r} not found")
        return _item(row)

    def content_sha256(self, item_id: str) -> str | None:
        """The sha256 recorded at ingest (``None`` for items ingested without one)."""
        query = select(t.items.c.content_sha256).where(t.items.c.item_id == item_id)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def find_item_ids(
        self, *, uri: str | None = None, text: str | None = None, limit: int = 2
    ) -> list[str]:
        """Ids of items whose ``uri`` or ``text`` equals the given one (a scan: for rare
        look-ups by content, such as an editor's task without our item id)."""
        if uri is None and text is None:
            raise ValueError("find_item_ids needs a uri or a text")
        column, value = (t.items.c.uri, uri) if uri is not None else (t.items.c.text, text)
        query = select(t.items.c.item_id).where(column == value).order_by(t.items.c.item_id)
        with self.engine.connect() as conn:
            return list(conn.execute(query.limit(limit)).scalars())

    def list_items(
        self, *, offset: int = 0, limit: int = 100, kind: str | None = None
    ) -> list[Item]:
        query = select(t.items).order_by(t.items.c.item_id).offset(offset).limit(limit)
        if kind is not None:
            query = query.where(t.items.c.kind == kind)
        with self.engine.connect() as conn:
            return [_item(row) for row in conn.execute(query)]

    def count_items(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.items)).scalar_one())

    def iter_items(self, *, kind: str | None = None, batch_size: int = 1000) -> Iterable[Item]:
        """All items in id order, fetched in pages (for jobs over large backlogs)."""
        last = ""
        while True:
            query = (
                select(t.items)
                .where(t.items.c.item_id > last)
                .order_by(t.items.c.item_id)
                .limit(batch_size)
            )
            if kind is not None:
                query = query.where(t.items.c.kind == kind)
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            for row in rows:
                yield _item(row)
            last = rows[-1].item_id

    # -- predictions ----------------------------------------------------------

    def predicted_item_ids(self, model_version: str) -> set[str]:
        """Ids of items that already have a prediction of ``model_version``."""
        query = select(t.predictions.c.item_id).where(
            t.predictions.c.model_version == model_version
        )
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def save_predictions(
        self, predictions: Sequence[Prediction], scores: Sequence[float], job_id: str | None = None
    ) -> int:
        """Write predictions with their suggestions in one transaction.

        A prediction for an (item, model version) pair that exists already is
        skipped, so a retried or resumed batch never duplicates. ``scores``
        (higher = label first) become the items' queue scores. Returns the
        number of predictions actually written.
        """
        if len(scores) != len(predictions):
            raise ValueError("scores must align with predictions")
        written = 0
        with self.engine.begin() as conn:
            for prediction, score in zip(predictions, scores, strict=True):
                written += self._save_one(conn, prediction, float(score), job_id)
        return written

    def _save_one(self, conn: Any, prediction: Prediction, score: float, job_id: str | None) -> int:
        if not np.isfinite(score):
            raise ValueError(f"score for item {prediction.item_id!r} is not finite")
        dialect = sqlite if self.dialect == "sqlite" else postgresql
        stmt = (
            dialect.insert(t.predictions)
            .values(
                item_id=prediction.item_id,
                model_name=prediction.model_name,
                model_version=prediction.model_version,
                job_id=job_id,
                class_names=list(prediction.class_names),
                probs=prediction.probs.astype(np.float32).tobytes(),
                embedding=None
                if prediction.embedding is None
                else prediction.embedding.astype(np.float32).tobytes(),
                timings_ms=dict(prediction.timings_ms),
                score=score,
                created_at=_now(),
            )
            .on_conflict_do_nothing()
            .returning(t.predictions.c.prediction_id)
        )
        prediction_id = conn.execute(stmt).scalar_one_or_none()
        if prediction_id is None:
            return 0
        rows = [
            {
                "prediction_id": prediction_id,
                "item_id": prediction.item_id,
                "position": i,
                "label": s.label,
                "score": s.score,
                "region": None if s.region is None else s.region.to_dict(),
                "model_name": s.model_name,
                "model_version": s.model_version,
                "attributes": dict(s.attributes),
                "parent_position": s.parent_index,
                "status": "pending",
            }
            for i, s in enumerate(prediction.suggestions)
        ]
        if rows:
            conn.execute(insert(t.suggestions), rows)
        conn.execute(
            update(t.items)
            .where(t.items.c.item_id == prediction.item_id)
            .values(score=score, score_model_version=prediction.model_version)
        )
        return 1

    def prediction_probs(self, prediction_id: int) -> np.ndarray:
        """The ``[n_suggestions, n_classes]`` probability rows of a prediction."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.predictions.c.probs, t.predictions.c.class_names).where(
                    t.predictions.c.prediction_id == prediction_id
                )
            ).first()
        if row is None:
            raise NotFoundError(f"prediction {prediction_id} not found")
        flat = np.frombuffer(row.probs, dtype=np.float32)
        n_classes = len(row.class_names)
        return flat.reshape(-1, n_classes) if n_classes else flat.reshape(0, 0)

    def count_predictions(self, model_version: str | None = None) -> int:
        query = select(func.count()).select_from(t.predictions)
        if model_version is not None:
            query = query.where(t.predictions.c.model_version == model_version)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def suggestions_for(
        self,
        item_id: str,
        *,
        model_version: str | None = None,
        prediction_id: int | None = None,
        min_score: float = 0.0,
    ) -> list[SuggestionRecord]:
        """Suggestions of an item's latest prediction (or of the one of ``model_version``,
        or the one with ``prediction_id``)."""
        self.get_item(item_id)
        with self.engine.connect() as conn:
            pred_query = select(t.predictions.c.prediction_id).where(
                t.predictions.c.item_id == item_id
            )
            if model_version is not None:
                pred_query = pred_query.where(t.predictions.c.model_version == model_version)
            if prediction_id is not None:
                pred_query = pred_query.where(t.predictions.c.prediction_id == prediction_id)
            pred_id = conn.execute(
                pred_query.order_by(t.predictions.c.prediction_id.desc()).limit(1)
            ).scalar_one_or_none()
            if pred_id is None:
                return []
            rows = conn.execute(
                select(t.suggestions)
                .where(t.suggestions.c.prediction_id == pred_id, t.suggestions.c.score >= min_score)
                .order_by(t.suggestions.c.position)
            ).all()
        return [_suggestion_record(row) for row in rows]

    def get_suggestion(self, suggestion_id: int) -> SuggestionRecord:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.suggestions).where(t.suggestions.c.suggestion_id == suggestion_id)
            ).first()
        if row is None:
            raise NotFoundError(f"suggestion {suggestion_id} not found")
        return _suggestion_record(row)

    # -- feedback -------------------------------------------------------------

    def record_feedback(self, fb: Feedback) -> FeedbackRecord:
        """Store feedback once per client key; a retry returns the first record.

        Suggestion-level feedback sets that suggestion's status; item-level
        feedback releases the item's lease, and item-level accept / edit /
        reject marks the item labeled (skip returns it to the queue).
        """
        self.get_item(fb.item_id)
        if fb.suggestion_id is not None:
            record = self.get_suggestion(fb.suggestion_id)
            if record.item_id != fb.item_id:
                raise ValueError(
                    f"suggestion {fb.suggestion_id} belongs to item {record.item_id!r}, "
                    f"not {fb.item_id!r}"
                )
        existing = self._feedback_by_key(fb.client_key)
        if existing is not None:
            return existing
        try:
            with self.engine.begin() as conn:
                feedback_id = self._write_feedback(conn, fb)
        except IntegrityError:
            existing = self._feedback_by_key(fb.client_key)
            if existing is None:
                raise
            return existing
        return FeedbackRecord(feedback_id, True, fb)

    def _write_feedback(self, conn: Any, fb: Feedback) -> int:
        result = conn.execute(
            insert(t.feedback).values(
                client_key=fb.client_key,
                item_id=fb.item_id,
                suggestion_id=fb.suggestion_id,
                action=fb.action,
                label=fb.label,
                region=None if fb.region is None else fb.region.to_dict(),
                annotator=fb.annotator,
                model_version=fb.model_version,
                created_at=fb.created_at,
            )
        )
        status = _STATUS_OF_ACTION.get(fb.action)
        if fb.suggestion_id is not None and status is not None:
            conn.execute(
                update(t.suggestions)
                .where(t.suggestions.c.suggestion_id == fb.suggestion_id)
                .values(status=status)
            )
        if fb.suggestion_id is None:
            # An item-level decision ends the annotator's work on the item.
            values: dict[str, Any] = {"leased_by": None, "lease_expires_at": None}
            if fb.action != "skip":
                values["labeled"] = True
            conn.execute(update(t.items).where(t.items.c.item_id == fb.item_id).values(**values))
        return int(result.inserted_primary_key[0])

    def _feedback_by_key(self, client_key: str) -> FeedbackRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.feedback).where(t.feedback.c.client_key == client_key)
            ).first()
        if row is None:
            return None
        return FeedbackRecord(row.feedback_id, False, _feedback(row))

    def withdraw_feedback(self, key_prefix: str, *, keep_prefix: str | None = None) -> int:
        """Delete the feedback whose client key starts with ``key_prefix`` (and not with
        ``keep_prefix``) in one transaction; returns how many records went.

        Items, predictions and suggestions stay. An affected suggestion's status
        falls back to its latest remaining decision (``pending`` when none); an
        affected item stays labeled only while it is machine-labeled or still has an
        item-level decision other than ``skip``.
        """
        if not key_prefix:
            raise ValueError("key_prefix must be non-empty: an empty one would withdraw everything")
        f = t.feedback.c
        where = [f.client_key.startswith(key_prefix, autoescape=True)]
        if keep_prefix:
            where.append(~f.client_key.startswith(keep_prefix, autoescape=True))
        with self.engine.begin() as conn:
            rows = conn.execute(select(f.item_id, f.suggestion_id).where(*where)).all()
            if not rows:
                return 0
            conn.execute(delete(t.feedback).where(*where))
            for suggestion_id in {r.suggestion_id for r in rows if r.suggestion_id is not None}:
                latest = conn.execute(
                    select(f.action)
                    .where(f.suggestion_id == suggestion_id, f.action.in_(list(_STATUS_OF_ACTION)))
                    .order_by(f.feedback_id.desc())
                    .limit(1)
                ).scalar_one_or_none()
                conn.execute(
                    update(t.suggestions)
                    .where(t.suggestions.c.suggestion_id == suggestion_id)
                    .values(status=_STATUS_OF_ACTION.get(latest or "", "pending"))
                )
            for item_id in {r.item_id for r in rows if r.suggestion_id is None}:
                decided = (
                    select(f.feedback_id)
                    .where(f.item_id == item_id, f.suggestion_id.is_(None), f.action != "skip")
                    .exists()
                )
                conn.execute(
                    update(t.items)
                    .where(t.items.c.item_id == item_id)
                    .values(labeled=or_(t.items.c.machine_labeled == true(), decided))
                )
        return len(rows)

    def feedback_for(self, item_id: str) -> list[FeedbackRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.feedback)
                .where(t.feedback.c.item_id == item_id)
                .order_by(t.feedback.c.feedback_id)
            ).all()
        return [FeedbackRecord(row.feedback_id, False, _feedback(row)) for row in rows]


def _item(row: Any) -> Item:
    return Item(
        item_id=row.item_id, kind=row.kind, uri=row.uri, text=row.text, metadata=row.metadata or {}
    )


def _suggestion_record(row: Any) -> SuggestionRecord:
    suggestion = Suggestion(
        label=row.label,
        score=row.score,
        region=region_from_dict(row.region),
        model_name=row.model_name,
        model_version=row.model_version,
        attributes=row.attributes or {},
        parent_index=row.parent_position,
    )
    return SuggestionRecord(
        row.suggestion_id, row.prediction_id, row.item_id, row.position, row.status, suggestion
    )


def _feedback(row: Any) -> Feedback:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return Feedback(
        item_id=row.item_id,
        action=row.action,
        client_key=row.client_key,
        suggestion_id=row.suggestion_id,
        label=row.label,
        region=region_from_dict(row.region),
        annotator=row.annotator,
        model_version=row.model_version,
        created_at=created,
    )
