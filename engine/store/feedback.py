"""Feedback: people's decisions, recorded once per client key, withdrawable."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, true, update
from sqlalchemy.exc import IntegrityError

from engine.store import schema as t
from engine.store.base import aware
from engine.store.consensus import is_quality_item, record_assignment_decision
from engine.store.predictions import PredictionQueries
from engine.store.records import FeedbackRecord, Verdict, feedback_of
from engine.types import Feedback

# A decision on a suggestion sets its status (skip leaves it as it is).
STATUS_OF_ACTION = {"accept": "accepted", "edit": "edited", "reject": "rejected"}


class FeedbackQueries(PredictionQueries):
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
        if is_quality_item(conn, fb.item_id):
            # Consensus / gold: each person's decision stays theirs (no shared status).
            if fb.suggestion_id is None:
                record_assignment_decision(conn, fb.item_id, fb.annotator, fb.action)
            return int(result.inserted_primary_key[0])
        status = STATUS_OF_ACTION.get(fb.action)
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
        return FeedbackRecord(row.feedback_id, False, feedback_of(row))

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
            withdrawn = len(rows)
            rows = [r for r in rows if not is_quality_item(conn, r.item_id)]
            for suggestion_id in {r.suggestion_id for r in rows if r.suggestion_id is not None}:
                latest = conn.execute(
                    select(f.action)
                    .where(f.suggestion_id == suggestion_id, f.action.in_(list(STATUS_OF_ACTION)))
                    .order_by(f.feedback_id.desc())
                    .limit(1)
                ).scalar_one_or_none()
                conn.execute(
                    update(t.suggestions)
                    .where(t.suggestions.c.suggestion_id == suggestion_id)
                    .values(status=STATUS_OF_ACTION.get(latest or "", "pending"))
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
        return withdrawn

    def feedback_for(self, item_id: str) -> list[FeedbackRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.feedback)
                .where(t.feedback.c.item_id == item_id)
                .order_by(t.feedback.c.feedback_id)
            ).all()
        return [FeedbackRecord(row.feedback_id, False, feedback_of(row)) for row in rows]

    def count_decisions(self, annotator: str, *, since: datetime | None = None) -> int:
        """Feedback records ``annotator`` made (since ``since``), skips included."""
        f = t.feedback.c
        query = select(func.count()).select_from(t.feedback).where(f.annotator == annotator)
        if since is not None:
            query = query.where(f.created_at >= since)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def feedback_between(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[Feedback]:
        """Every decision recorded in ``[since, until)``, oldest first."""
        f = t.feedback.c
        query = select(t.feedback).order_by(f.feedback_id)
        if since is not None:
            query = query.where(f.created_at >= since)
        if until is not None:
            query = query.where(f.created_at < until)
        with self.engine.connect() as conn:
            return [feedback_of(row) for row in conn.execute(query)]

    def verdicts(self, *, model_version: str | None = None) -> list[Verdict]:
        """The latest accept / edit / reject on every suggestion a person judged, by id.

        ``model_version``: only suggestions of that model version.
        """
        f, s = t.feedback.c, t.suggestions.c
        query = (
            select(f.suggestion_id, f.action, f.label, f.region, s.score, f.annotator, f.created_at)
            .add_columns(s.label.label("s_label"), s.region.label("s_region"))
            .add_columns(s.model_version)
            .join_from(t.feedback, t.suggestions, f.suggestion_id == s.suggestion_id)
            .where(f.action.in_(list(STATUS_OF_ACTION)))
            .order_by(f.feedback_id)
        )
        if model_version is not None:
            query = query.where(s.model_version == model_version)
        latest: dict[int, Verdict] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                latest[row.suggestion_id] = Verdict(
                    row.suggestion_id,
                    row.action,
                    row.label,
                    row.region,
                    row.s_label,
                    row.s_region,
                    float(row.score),
                    row.model_version,
                    row.annotator,
                    aware(row.created_at),
                )
        return [latest[k] for k in sorted(latest)]
