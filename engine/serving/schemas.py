"""Request (``*In``) and response (``*Out``) bodies of the HTTP API.

Units live in names: ``box_xyxy`` is absolute pixels ``[x1, y1, x2, y2]``,
span offsets are characters into the item text (half-open ``[start, end)``),
scores are in [0, 1]. Regions are tagged by ``kind`` (``box``, ``mask``,
``span``). These schemas know pydantic and the core types, nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.review.queue import Lease
from engine.store import FINAL_STATES, FeedbackRecord, JobError, JobRecord, SuggestionRecord
from engine.types import Box, FeedbackAction, Item, ItemKind, Mask, Region, Span

Score = Annotated[float, Field(ge=0.0, le=1.0)]
Name = Annotated[str, Field(min_length=1, max_length=128)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# -- regions ------------------------------------------------------------------


class BoxRegion(_In):
    """An axis-aligned box in absolute pixels."""

    kind: Literal["box"] = "box"
    box_xyxy: tuple[float, float, float, float] = Field(
        description="[x1, y1, x2, y2] in absolute pixels, 0 <= x1 <= x2, 0 <= y1 <= y2",
        examples=[[10.0, 20.0, 110.0, 220.0]],
    )

    @model_validator(mode="after")
    def _valid(self) -> BoxRegion:
        self.to_region()
        return self

    def to_region(self) -> Box:
        return Box.from_xyxy(self.box_xyxy)


class MaskRegion(_In):
    """A binary mask as COCO compressed RLE plus its bounding box."""

    kind: Literal["mask"] = "mask"
    mask_rle: str = Field(description="COCO compressed RLE counts string")
    height_px: int = Field(gt=0)
    width_px: int = Field(gt=0)
    box_xyxy: tuple[float, float, float, float] = Field(
        description="bounding box of the mask, absolute pixels"
    )

    @model_validator(mode="after")
    def _valid(self) -> MaskRegion:
        self.to_region()
        return self

    def to_region(self) -> Mask:
        return Mask(self.mask_rle, self.height_px, self.width_px, Box.from_xyxy(self.box_xyxy))


class SpanRegion(_In):
    """A half-open character range ``[start, end)`` into the item text."""

    kind: Literal["span"] = "span"
    start: int = Field(ge=0, description="first character offset")
    end: int = Field(gt=0, description="one past the last character offset")
    text: str | None = Field(default=None, description="the covered text, checked if given")

    @model_validator(mode="after")
    def _valid(self) -> SpanRegion:
        self.to_region()
        return self

    def to_region(self) -> Span:
        return Span(self.start, self.end, self.text)


RegionBody = Annotated[BoxRegion | MaskRegion | SpanRegion, Field(discriminator="kind")]


def region_out(region: Region | None) -> RegionBody | None:
    """The wire form of a core region."""
    if region is None:
        return None
    if isinstance(region, Box):
        return BoxRegion(box_xyxy=region.box_xyxy)
    if isinstance(region, Mask):
        return MaskRegion(
            mask_rle=region.mask_rle,
            height_px=region.height_px,
            width_px=region.width_px,
            box_xyxy=region.box.box_xyxy,
        )
    return SpanRegion(start=region.start, end=region.end, text=region.text)


# -- health -------------------------------------------------------------------


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    version: str = Field(description="labelengine package version")
    schema_version: int | None = Field(description="database schema version")
    items: int | None = Field(description="number of items in the store")
    predictions: int | None = Field(description="number of stored predictions")
    detail: str | None = Field(default=None, description="why the store is unavailable")


# -- items --------------------------------------------------------------------


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


# -- suggestions --------------------------------------------------------------


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

    @classmethod
    def of(cls, record: SuggestionRecord) -> SuggestionOut:
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
        )


# -- feedback -----------------------------------------------------------------


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


# -- jobs ---------------------------------------------------------------------


class JobIn(_In):
    model: Name = Field(description="a model configured under configs/models", examples=["yolo11n"])
    segmenter: Name | None = Field(
        default=None,
        description="a segmenter (family sam) turning each confident box of the detector "
        "into a mask, one encoder pass per image",
        examples=["litemedsam"],
    )
    limit: int | None = Field(default=None, gt=0, description="pre-label at most this many items")


class JobOut(BaseModel):
    job_id: str
    kind: str
    state: str = Field(description="pending, running, succeeded, failed or cancelled")
    model_name: str | None
    model_version: str | None
    config: dict[str, Any]
    total: int = Field(description="items the job covers")
    done: int
    failed: int
    skipped: int = Field(description="items already predicted by the same model version")
    remaining: int
    progress: float = Field(ge=0.0, le=1.0, description="(done + failed + skipped) / total")
    finished: bool
    message: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: JobRecord) -> JobOut:
        finished = job.state in FINAL_STATES
        handled = job.done + job.failed + job.skipped
        empty_progress = 1.0 if finished else 0.0
        progress = min(handled / job.total, 1.0) if job.total > 0 else empty_progress
        return cls(
            job_id=job.job_id,
            kind=job.kind,
            state=job.state,
            model_name=job.model_name,
            model_version=job.model_version,
            config=dict(job.config),
            total=job.total,
            done=job.done,
            failed=job.failed,
            skipped=job.skipped,
            remaining=job.remaining,
            progress=progress,
            finished=finished,
            message=job.message,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


class JobErrorOut(BaseModel):
    item_id: str
    message: str
    created_at: datetime

    @classmethod
    def of(cls, error: JobError) -> JobErrorOut:
        return cls(item_id=error.item_id, message=error.message, created_at=error.created_at)


# -- queue --------------------------------------------------------------------


class QueueNextIn(_In):
    annotator: Name | None = Field(
        default=None, description="who asks; defaults to the X-Annotator header"
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
    lease_expires_at: datetime = Field(description="send a heartbeat before this time (UTC)")
    lease_seconds: float = Field(description="how long one lease or heartbeat lasts")
    item: ItemOut

    @classmethod
    def of(cls, lease: Lease, item: Item, lease_seconds: float) -> LeaseOut:
        return cls(
            item_id=lease.item_id,
            annotator=lease.annotator,
            score=lease.score,
            lease_expires_at=datetime.fromtimestamp(lease.expires_at, tz=UTC),
            lease_seconds=lease_seconds,
            item=ItemOut.of(item),
        )


class ReleaseOut(BaseModel):
    item_id: str
    released: bool = Field(description="false when the annotator held no lease on the item")


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong and what to do about it")


class FieldErrorOut(BaseModel):
    loc: list[str | int] = Field(description="where: body / query / path / header, then keys")
    msg: str
    type: str


class ValidationErrorOut(ErrorOut):
    errors: list[FieldErrorOut] = Field(description="each invalid field of the request")


class MaskRleIn(_In):
    """A binary mask at the image size as COCO compressed RLE (pycocotools' format)."""

    size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] = Field(
        description="[height_px, width_px]; must be the image's size"
    )
    counts: str = Field(
        min_length=1, max_length=4_000_000, description="COCO compressed RLE counts string"
    )


class SegmentIn(_In):
    item_id: str = Field(min_length=1, max_length=128)
    points_xy: list[tuple[float, float]] | None = Field(
        default=None, max_length=64, description="click positions in image pixels"
    )
    point_labels: list[Literal[0, 1]] | None = Field(
        default=None, max_length=64, description="1 = positive (inside), 0 = negative"
    )
    box_xyxy: tuple[float, float, float, float] | None = Field(
        default=None, description="box prompt in image pixels"
    )
    multimask: bool = Field(default=False, description="three candidate masks, best first")
    previous_mask_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="refine: a mask_id returned earlier for this item (its low-res logits "
        "become SAM's mask_input); 404 once the server has forgotten it",
    )
    mask_input_rle: MaskRleIn | None = Field(
        default=None,
        description="refine: a previous binary mask at the image size, turned into low-res "
        "logits (inside +20, outside -20, resized and padded the way SAM prepares images)",
    )

    @model_validator(mode="after")
    def _one_previous_mask(self) -> SegmentIn:
        if self.previous_mask_id is not None and self.mask_input_rle is not None:
            raise ValueError("give previous_mask_id or mask_input_rle, not both")
        return self


class SegmentMaskOut(BaseModel):
    mask_id: str = Field(description="pass as previous_mask_id to refine this mask")
    mask_rle: str = Field(description="COCO compressed RLE counts (pycocotools), size = size_hw")
    size_hw: tuple[int, int]
    box_xyxy: tuple[float, float, float, float]
    polygons_xy: list[list[tuple[float, float]]] = Field(description="outer contours, pixels")
    area_px: int
    predicted_iou: float
    stability_score: float
    multimask_disagreement: float | None = None


class SegmentOut(BaseModel):
    item_id: str
    model_version: str
    prompt: str = Field(
        description="what the model was given: points, box, points+box, "
        "derived_box:detector (smallest detector box around the click) or "
        "derived_box:default (a square around the click)"
    )
    prompt_box_xyxy: tuple[float, float, float, float] | None
    masks: list[SegmentMaskOut]
    encode_ms: float | None = Field(description="null when the embedding was cached")
    decode_ms: float
