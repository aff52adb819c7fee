"""Regions on the wire, tagged by ``kind``: ``box`` (pixels), ``mask`` (RLE), ``span`` (chars)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from engine.serving.schemas.common import _In
from engine.types import Box, Mask, Region, Span


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
