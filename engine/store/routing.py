"""Confidence routing's SQL: machine-accept confident suggestions, label finished items.

The rules (thresholds per label, what "finished" means, reversibility) are
``engine.review.routing``; these are the statements that apply them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, true, update

from engine.store import schema as t
from engine.store.base import StoreCore

PENDING = "pending"
MACHINE_ACCEPTED = "machine_accepted"
_ID_CHUNK = 500


def _chunks(item_ids: Sequence[str] | None) -> list[list[str] | None]:
    if item_ids is None:
        return [None]
    ids = list(dict.fromkeys(item_ids))
    return [ids[lo : lo + _ID_CHUNK] for lo in range(0, len(ids), _ID_CHUNK)]


def _accept_clauses(
    default_threshold: float | None, label_thresholds: Mapping[str, float | None]
) -> list[ColumnElement[bool]]:
    """One condition per threshold group: label-specific ones, then the default."""
    s = t.suggestions.c
    clauses: list[ColumnElement[bool]] = [
        and_(s.label == label, s.score >= value)
        for label, value in label_thresholds.items()
        if value is not None
    ]
    if default_threshold is not None:
        others = s.label.not_in(list(label_thresholds)) if label_thresholds else true()
        clauses.append(and_(others, s.score >= default_threshold))
    return clauses


class RoutingQueries(StoreCore):
    def machine_accept(
        self,
        default_threshold: float | None,
        label_thresholds: Mapping[str, float | None],
        *,
        item_ids: Sequence[str] | None,
        model_version: str | None,
        now: float,
    ) -> tuple[int, int]:
        """``(suggestions machine-accepted, items machine-labeled)`` in one transaction."""
        clauses = _accept_clauses(default_threshold, label_thresholds)
        n_suggestions = n_items = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(item_ids):
                if clauses:
                    n_suggestions += _accept(conn, clauses, chunk, model_version)
                n_items += _machine_label(conn, chunk, now)
        return n_suggestions, n_items

    def revert_machine_labels(self, *, item_ids: Sequence[str] | None) -> tuple[int, int]:
        """Machine-accepted suggestions back to pending, machine-labeled items back in the
        queue; ``(suggestions, items)`` changed."""
        s, items = t.suggestions.c, t.items.c
        n_suggestions = n_items = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(item_ids):
                where_s = [s.status == MACHINE_ACCEPTED]
                where_i = [items.machine_labeled == true()]
                if chunk is not None:
                    where_s.append(s.item_id.in_(chunk))
                    where_i.append(items.item_id.in_(chunk))
                stmt_s = update(t.suggestions).where(*where_s).values(status=PENDING)
                n_suggestions += int(conn.execute(stmt_s).rowcount)
                stmt_i = (
                    update(t.items).where(*where_i).values(labeled=False, machine_labeled=False)
                )
                n_items += int(conn.execute(stmt_i).rowcount)
        return n_suggestions, n_items


def _accept(
    conn: Any, clauses: list[ColumnElement[bool]], chunk: list[str] | None, version: str | None
) -> int:
    s, q = t.suggestions.c, t.quality_items.c
    # Consensus and gold items are people's work, never the machine's.
    not_quality = ~exists().where(q.item_id == s.item_id)
    where = [s.status == PENDING, or_(*clauses), not_quality]
    if chunk is not None:
        where.append(s.item_id.in_(chunk))
    if version is not None:  # the suggestion's own model, or the prediction's (chained)
        p = t.predictions.c
        of_prediction = exists().where(
            p.prediction_id == s.prediction_id, p.model_version == version
        )
        where.append(or_(s.model_version == version, of_prediction))
    stmt = update(t.suggestions).where(*where).values(status=MACHINE_ACCEPTED)
    return int(conn.execute(stmt).rowcount)


def _machine_label(conn: Any, chunk: list[str] | None, now: float) -> int:
    s, p, items = t.suggestions.c, t.predictions.c, t.items.c
    # Through the suggestion's prediction: a chained prediction (detector + segmenter)
    # has a combined version that none of its suggestions carries.
    same_item = and_(
        s.item_id == items.item_id,
        p.prediction_id == s.prediction_id,
        p.model_version == items.score_model_version,
    )
    machine = exists().where(same_item, s.status == MACHINE_ACCEPTED)
    unresolved = exists().where(same_item, s.status.not_in([MACHINE_ACCEPTED, "accepted"]))
    free = or_(items.lease_expires_at.is_(None), items.lease_expires_at < now)
    where = [items.labeled == false(), free, machine, ~unresolved]
    if chunk is not None:
        where.append(items.item_id.in_(chunk))
    stmt = update(t.items).where(*where).values(labeled=True, machine_labeled=True)
    return int(conn.execute(stmt).rowcount)
