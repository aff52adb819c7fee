"""Click-to-segment: a prompt in, masks out."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from engine.serving.schemas.common import _In


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
