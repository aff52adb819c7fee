"""What the store hands back: frozen records, and the row -> record conversions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.store.base import aware
from engine.types import Feedback, Item, Suggestion, region_from_dict


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


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    kind: str
    state: str
    config: dict[str, Any]
    model_name: str | None
    model_version: str | None
    total: int
    done: int
    failed: int
    skipped: int
    message: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def remaining(self) -> int:
        return max(self.total - self.done - self.failed - self.skipped, 0)


@dataclass(frozen=True)
class JobError:
    item_id: str
    message: str
    created_at: datetime


@dataclass(frozen=True)
class UserRecord:
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Lease:
    item_id: str
    annotator: str
    expires_at: float  # epoch seconds
    score: float | None


@dataclass(frozen=True)
class ImageRow:
    """What an encoder needs of an image item, without a per-item query."""

    item_id: str
    uri: str
    content_sha256: str | None


@dataclass(frozen=True)
class ClickTarget:
    """What a click needs of an item, read in one statement (``Store.click_target``)."""

    item: Item
    content_sha256: str | None
    candidate_boxes_xyxy: tuple[tuple[float, float, float, float], ...]
    leased_by: str | None = None
    lease_expires_at: float | None = None


@dataclass(frozen=True)
class Verdict:
    """A person's latest verdict on one suggestion, beside what the model said."""

    suggestion_id: int
    action: str  # accept | edit | reject
    label: str | None  # the edit's label (None: unchanged)
    region: dict[str, Any] | None  # the edit's region as stored (None: unchanged)
    suggested_label: str
    suggested_region: dict[str, Any] | None
    score: float
    model_version: str | None = None  # the suggestion's
    annotator: str | None = None
    decided_at: datetime | None = None


def item_of(row: Any) -> Item:
    return Item(
        item_id=row.item_id, kind=row.kind, uri=row.uri, text=row.text, metadata=row.metadata or {}
    )


def suggestion_of(row: Any) -> SuggestionRecord:
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


def feedback_of(row: Any) -> Feedback:
    return Feedback(
        item_id=row.item_id,
        action=row.action,
        client_key=row.client_key,
        suggestion_id=row.suggestion_id,
        label=row.label,
        region=region_from_dict(row.region),
        annotator=row.annotator,
        model_version=row.model_version,
        created_at=aware(row.created_at),
    )


def job_of(row: Any) -> JobRecord:
    return JobRecord(
        job_id=row.job_id,
        kind=row.kind,
        state=row.state,
        config=row.config,
        model_name=row.model_name,
        model_version=row.model_version,
        total=row.total,
        done=row.done,
        failed=row.failed,
        skipped=row.skipped,
        message=row.message,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
    )


def user_of(row: Any) -> UserRecord:
    revoked = None if row.revoked_at is None else aware(row.revoked_at)
    return UserRecord(row.name, row.role, aware(row.created_at), revoked)


@dataclass(frozen=True)
class QualityItem:
    """An item under consensus (``overlap``) or a gold item (see ``schema.quality_items``)."""

    item_id: str
    role: str  # overlap | gold
    k: int | None
    state: str  # open | review | final
    final_labels: tuple[dict[str, Any], ...]  # {"label": str, "region": dict | None}
    resolution: str | None  # consensus | reviewer | gold
    resolved_by: str | None
    batch: str | None
    created_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class Assignment:
    """One person's hold on, or finished work on, a quality item."""

    item_id: str
    annotator: str
    slot: int | None
    leased_at: float  # epoch seconds
    expires_at: float
    done_at: float | None


def quality_item_of(row: Any) -> QualityItem:
    return QualityItem(
        item_id=row.item_id,
        role=row.role,
        k=row.k,
        state=row.state,
        final_labels=tuple(row.final_labels or ()),
        resolution=row.resolution,
        resolved_by=row.resolved_by,
        batch=row.batch,
        created_at=aware(row.created_at),
        resolved_at=None if row.resolved_at is None else aware(row.resolved_at),
    )


def assignment_of(row: Any) -> Assignment:
    return Assignment(
        row.item_id, row.annotator, row.slot, row.leased_at, row.expires_at, row.done_at
    )


@dataclass(frozen=True)
class Batch:
    batch_id: str
    kind: str  # calibration
    state: str  # open | closed
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None


def batch_of(row: Any) -> Batch:
    closed = None if row.closed_at is None else aware(row.closed_at)
    return Batch(row.batch_id, row.kind, row.state, aware(row.created_at), closed, row.closed_by)
