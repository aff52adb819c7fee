"""Predictions and their suggestions: written once per (item, model version), read back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from engine.store import schema as t
from engine.store.base import NotFoundError, now_utc
from engine.store.ranking import RankingQueries
from engine.store.records import ClickTarget, SuggestionRecord, item_of, suggestion_of
from engine.types import Box, Prediction, region_from_dict

_PRED = t.predictions.c
_SUG = t.suggestions.c


class PredictionQueries(RankingQueries):
    def predicted_item_ids(self, model_version: str) -> set[str]:
        """Ids of items that already have a prediction of ``model_version``."""
        query = select(_PRED.item_id).where(_PRED.model_version == model_version)
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
                embedding=None,  # kept as float16 in prediction_extras
                timings_ms=dict(prediction.timings_ms),
                score=score,
                created_at=now_utc(),
            )
            .on_conflict_do_nothing()
            .returning(_PRED.prediction_id)
        )
        prediction_id = conn.execute(stmt).scalar_one_or_none()
        if prediction_id is None:
            return 0
        self.save_extras(conn, prediction_id, prediction)
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
                select(_PRED.probs, _PRED.class_names).where(_PRED.prediction_id == prediction_id)
            ).first()
        if row is None:
            raise NotFoundError(f"prediction {prediction_id} not found")
        flat = np.frombuffer(row.probs, dtype=np.float32)
        n_classes = len(row.class_names)
        return flat.reshape(-1, n_classes) if n_classes else flat.reshape(0, 0)

    def prediction_score(self, item_id: str, model_version: str) -> float | None:
        """The score of the item's prediction of ``model_version``; ``None`` if none."""
        query = select(_PRED.score).where(
            _PRED.item_id == item_id, _PRED.model_version == model_version
        )
        with self.engine.connect() as conn:
            score = conn.execute(query.limit(1)).scalar_one_or_none()
        return None if score is None else float(score)

    def count_predictions(
        self, model_version: str | None = None, *, job_id: str | None = None
    ) -> int:
        """Predictions stored (of ``model_version``; written by ``job_id`` in any run)."""
        query = select(func.count()).select_from(t.predictions)
        if model_version is not None:
            query = query.where(_PRED.model_version == model_version)
        if job_id is not None:
            query = query.where(_PRED.job_id == job_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def class_names(self, item_id: str) -> list[str]:
        """The class names of the item's latest prediction (empty without one)."""
        query = (
            select(_PRED.class_names)
            .where(_PRED.item_id == item_id)
            .order_by(_PRED.prediction_id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            names = conn.execute(query).scalar_one_or_none()
        return list(names or [])

    def prediction_versions(self) -> list[str]:
        """Every model version with stored predictions, sorted."""
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(_PRED.model_version).distinct()).scalars())

    def iter_predicted(
        self, model_version: str, *, page: int = 1000
    ) -> Iterator[tuple[str, float]]:
        """``(item_id, prediction score)`` of every prediction of ``model_version``, by id."""
        last = ""
        while True:
            query = (
                select(_PRED.item_id, _PRED.score)
                .where(_PRED.model_version == model_version, _PRED.item_id > last)
                .order_by(_PRED.item_id)
                .limit(page)
            )
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            for row in rows:
                yield row.item_id, float(row.score)
            last = rows[-1].item_id

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
            pred_query = select(_PRED.prediction_id).where(_PRED.item_id == item_id)
            if model_version is not None:
                pred_query = pred_query.where(_PRED.model_version == model_version)
            if prediction_id is not None:
                pred_query = pred_query.where(_PRED.prediction_id == prediction_id)
            pred_id = conn.execute(
                pred_query.order_by(_PRED.prediction_id.desc()).limit(1)
            ).scalar_one_or_none()
            if pred_id is None:
                return []
            rows = conn.execute(
                select(t.suggestions)
                .where(_SUG.prediction_id == pred_id, _SUG.score >= min_score)
                .order_by(_SUG.position)
            ).all()
        return [suggestion_of(row) for row in rows]

    def click_target(self, item_id: str, *, candidates_min_score: float | None) -> ClickTarget:
        """The item, its content hash and (with ``candidates_min_score``) the boxes of its
        latest prediction scoring at least that which no person rejected: one statement,
        the only store round trip of a warm click."""
        query = select(t.items).where(t.items.c.item_id == item_id)
        if candidates_min_score is not None:
            latest = (
                select(func.max(_PRED.prediction_id))
                .where(_PRED.item_id == t.items.c.item_id)
                .scalar_subquery()
            )
            joined = t.items.outerjoin(
                t.suggestions,
                and_(
                    _SUG.prediction_id == latest,
                    _SUG.score >= candidates_min_score,
                    _SUG.status != "rejected",
                ),
            )
            query = (
                select(t.items, _SUG.region.label("s_region"))
                .select_from(joined)
                .where(t.items.c.item_id == item_id)
                .order_by(_SUG.position)
            )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            raise NotFoundError(f"item {item_id!r} not found")
        boxes = []
        for row in rows if candidates_min_score is not None else ():
            region = region_from_dict(row.s_region)
            if isinstance(region, Box):
                boxes.append(region.box_xyxy)
        first = rows[0]
        return ClickTarget(
            item_of(first),
            first.content_sha256,
            tuple(boxes),
            first.leased_by,
            first.lease_expires_at,
        )

    def get_suggestion(self, suggestion_id: int) -> SuggestionRecord:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.suggestions).where(_SUG.suggestion_id == suggestion_id)
            ).first()
        if row is None:
            raise NotFoundError(f"suggestion {suggestion_id} not found")
        return suggestion_of(row)
