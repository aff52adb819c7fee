"""The queue: lease the next item, keep the lease alive, give it back."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from engine.serving.schemas.common import Name, _In
from engine.serving.schemas.items import ItemOut
from engine.store import Lease
from engine.types import Item


class QueueNextIn(_In):
    annotator: Name | None = Field(
        default=None,
        description="who asks (the service token only; a person's token acts for them)",
    )
    model_version: str | None = Field(
        default=None, max_length=128, description="only items scored by this model version"
    )
    label: str | None = Field(
        default=None, max_length=256, description="only items with a suggestion of this label"
    )
    label_threshold: float = Field(
        default=0.0, ge=0.0, le=1.0, description="minimum score of that label's suggestion"
    )
    job_id: str | None = Field(
        default=None, max_length=64, description="only items pre-labeled by this job"
    )


class LeaseIn(_In):
    annotator: Name | None = Field(
        default=None, description="the lease holder; defaults to the X-Annotator header"
    )


class LeaseOut(BaseModel):
    item_id: str
    annotator: str
    score: float | None = Field(description="the item's queue score; higher = label first")
    rank: int | None = Field(
        default=None,
        description="1 + the unlabeled items served before it: why it is here (with score)",
    )
    lease_expires_at: datetime = Field(description="send a heartbeat before this time (UTC)")
    lease_seconds: float = Field(description="how long one lease or heartbeat lasts")
    item: ItemOut

    @classmethod
    def of(
        cls, lease: Lease, item: Item, lease_seconds: float, rank: int | None = None
    ) -> LeaseOut:
        return cls(
            item_id=lease.item_id,
            annotator=lease.annotator,
            score=lease.score,
            rank=rank,
            lease_expires_at=datetime.fromtimestamp(lease.expires_at, tz=UTC),
            lease_seconds=lease_seconds,
            item=ItemOut.of(item),
        )


class ProgressOut(BaseModel):
    labeled: int = Field(description="items with a final decision (people or routing)")
    remaining: int = Field(description="items still to label")
    mine: int = Field(description="this person's decisions since `since` (all time without)")
    per_hour: float | None = Field(description="mine / hours since `since`; null without it")


class ReleaseOut(BaseModel):
    item_id: str
    released: bool = Field(description="false when the annotator held no lease on the item")
