"""Consensus, gold, the reviewer queue and the quality report on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from engine.serving.schemas.common import Name, _In
from engine.serving.schemas.regions import RegionBody, region_out
from engine.store import QualityItem, ReviewedLabel
from engine.types import region_from_dict


class LabelIn(_In):
    label: Name
    region: RegionBody | None = Field(default=None, description="null: a whole-item label")

    def as_dict(self) -> dict[str, Any]:
        region = None if self.region is None else self.region.to_region().to_dict()
        return {"label": self.label, "region": region}


class LabelOut(BaseModel):
    label: str
    region: RegionBody | None = None

    @classmethod
    def of(cls, label: ReviewedLabel) -> LabelOut:
        return cls(label=label.label, region=region_out(label.region))

    @classmethod
    def of_dict(cls, data: dict[str, Any]) -> LabelOut:
        region = region_from_dict(data.get("region"))
        return cls(label=str(data["label"]), region=region_out(region))


class OverlapIn(_In):
    k: int = Field(default=3, ge=2, le=50, description="distinct people per item")
    fraction: float | None = Field(
        default=None, gt=0.0, le=1.0, description="share of the unlabeled backlog, drawn at random"
    )
    item_ids: list[Name] | None = Field(default=None, max_length=100_000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class OverlapOut(BaseModel):
    item_ids: list[str] = Field(description="items newly under consensus")


class GoldIn(_In):
    item_id: Name
    labels: list[LabelIn] | None = Field(
        default=None, max_length=10_000, description="the gold labels; null: the item's labels now"
    )


class QualityItemOut(BaseModel):
    item_id: str
    role: str = Field(description="overlap | gold")
    k: int | None
    state: str = Field(description="open | review | final")
    final_labels: list[LabelOut]
    resolution: str | None = Field(description="consensus | reviewer | gold")
    resolved_by: str | None
    resolved_at: datetime | None

    @classmethod
    def of(cls, q: QualityItem) -> QualityItemOut:
        return cls(
            item_id=q.item_id,
            role=q.role,
            k=q.k,
            state=q.state,
            final_labels=[LabelOut.of_dict(d) for d in q.final_labels],
            resolution=q.resolution,
            resolved_by=q.resolved_by,
            resolved_at=q.resolved_at,
        )


class PersonLabelsOut(BaseModel):
    annotator: str
    labels: list[LabelOut]


class ReviewCaseOut(BaseModel):
    item_id: str
    k: int
    decisions: list[PersonLabelsOut] = Field(description="every person's labels, side by side")
    majority: list[str] = Field(description="people of a majority short of k; empty: none")


class ResolveIn(_In):
    pick: Name | None = Field(default=None, description="take this person's labels")
    labels: list[LabelIn] | None = Field(default=None, max_length=10_000, description="merged")


class QualityReportOut(BaseModel):
    generated_at: str
    agreement: dict[str, Any] = Field(
        description="fleiss_kappa, verdict, per_class, suggestions, krippendorff_alpha, pairs "
        "(cohen_kappa), regions (mean_iou, mean_dice, unmatched), spans (exact / overlap F1)"
    )
    resolution: dict[str, int]
    gold: dict[str, int]
    people: list[dict[str, Any]]
    models: list[dict[str, Any]]
    models_over_time: list[dict[str, Any]] = Field(
        description="model_version, day (UTC), judged, acceptance_rate"
    )
    attention: dict[str, Any] = Field(
        description="classes and people below 0.6 (clarify the instructions), overall verdict"
    )


class CalibrationIn(_In):
    size: int = Field(default=50, ge=1, le=10_000, description="items in the batch")
    k: int | None = Field(
        default=None, ge=2, le=50, description="people per item; default: every active annotator"
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class BatchOut(BaseModel):
    batch_id: str
    kind: str
    state: str = Field(description="open (the queue serves only its items) | closed")
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None


class CalibrationOut(BatchOut):
    item_ids: list[str]
    k: int
    method: str = Field(description="k-center (stored embeddings) | stratified (by class)")


class CalibrationReportOut(BaseModel):
    batch_id: str
    state: str
    items: int
    finished_by_all: int
    fleiss_kappa: float | None
    verdict: str
    lowest_items: list[dict[str, Any]] = Field(
        description="item_id, raters, agreement (share in the majority), worst first"
    )
    lowest_classes: list[dict[str, Any]] = Field(description="per-class Fleiss kappa, worst first")
