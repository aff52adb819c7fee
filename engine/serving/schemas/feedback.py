"""A person's decision as it comes in (``FeedbackIn``) and as it was recorded."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from engine.serving.schemas.common import Name, _In
from engine.serving.schemas.regions import RegionBody, region_out
from engine.store import FeedbackRecord
from engine.types import FeedbackAction


class FeedbackIn(_In):
    """An editor's decision on a suggestion (``suggestion_id``) or on a whole item."""

    client_key: Name = Field(
        description="unique per decision; a retry with the same key is recorded once"
    )
    item_id: Name
    action: FeedbackAction
    suggestion_id: int | None = Field(default=None, description="the suggestion judged")
    label: str | None = Field(default=None, min_length=1, max_length=256)
    region: RegionBody | None = Field(default=None, description="the corrected region (edit)")
    model_version: str | None = Field(
        default=None,
        max_length=128,
        description="model version judged; defaults to the suggestion's version",
    )


class FeedbackOut(BaseModel):
    feedback_id: int
    created: bool = Field(description="false when the client key had been seen before")
    client_key: str
    item_id: str
    action: FeedbackAction
    suggestion_id: int | None
    label: str | None
    region: RegionBody | None
    annotator: str
    model_version: str | None
    created_at: datetime

    @classmethod
    def of(cls, record: FeedbackRecord) -> FeedbackOut:
        fb = record.feedback
        return cls(
            feedback_id=record.feedback_id,
            created=record.created,
            client_key=fb.client_key,
            item_id=fb.item_id,
            action=fb.action,
            suggestion_id=fb.suggestion_id,
            label=fb.label,
            region=region_out(fb.region),
            annotator=fb.annotator,
            model_version=fb.model_version,
            created_at=fb.created_at,
        )
