"""Items and the suggestions a model made for them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from engine.review.explain import RegionWhy
from engine.serving.schemas.common import Score
from engine.serving.schemas.regions import RegionBody, region_out
from engine.store import SuggestionRecord
from engine.types import Item, ItemKind


class ItemOut(BaseModel):
    item_id: str
    kind: ItemKind
    uri: str | None = Field(description="where the image lives (images only)")
    text: str | None = Field(description="the text to label (texts only)")
    metadata: dict[str, Any]
    image_url: str | None = Field(description="API path of the image bytes (images only)")

    @classmethod
    def of(cls, item: Item) -> ItemOut:
        image_url = f"/items/{item.item_id}/image" if item.kind == "image" else None
        return cls(
            item_id=item.item_id,
            kind=item.kind,
            uri=item.uri,
            text=item.text,
            metadata=dict(item.metadata),
            image_url=image_url,
        )


class ItemPageOut(BaseModel):
    items: list[ItemOut]
    offset: int
    limit: int


class SuggestionOut(BaseModel):
    suggestion_id: int
    item_id: str
    label: str
    score: Score = Field(description="the model's confidence in [0, 1]")
    region: RegionBody | None = Field(description="null for a whole-item label")
    model_name: str
    model_version: str
    status: str = Field(description="pending, accepted, edited or rejected")
    position: int = Field(description="row of this suggestion in its prediction")
    parent_position: int | None = Field(description="position of the suggestion it refines")
    attributes: dict[str, Any]
    uncertainty: float | None = Field(
        default=None, description="this region's score under the queue's policy"
    )
    top_classes: list[dict[str, Any]] = Field(
        default_factory=list, description="the 5 likeliest classes: [{label, prob}]"
    )

    @classmethod
    def of(cls, record: SuggestionRecord, why: RegionWhy | None = None) -> SuggestionOut:
        s = record.suggestion
        return cls(
            suggestion_id=record.suggestion_id,
            item_id=record.item_id,
            label=s.label,
            score=s.score,
            region=region_out(s.region),
            model_name=s.model_name,
            model_version=s.model_version,
            status=record.status,
            position=record.position,
            parent_position=s.parent_index,
            attributes=dict(s.attributes),
            uncertainty=None if why is None else why.uncertainty,
            top_classes=[]
            if why is None
            else [{"label": c, "prob": p} for c, p in why.top_classes],
        )
