"""Compare a Label Studio annotation's regions with the suggestions they came from.

Results are read with ``engine.labelstudio.annotations.results_to_regions``
(percent -> pixels, alias -> label value), one at a time so a bad one does not
spoil the rest. A region equals its suggestion when the label is the one the
project's config maps the suggestion's class to (case-insensitive name without a
config) and the geometry agrees: boxes within ``BOX_TOLERANCE_PX`` per corner
coordinate, spans exactly, masks with IoU >= ``MASK_IOU_SAME`` (polygon parts of
one suggestion are joined and compared with the outlines that were sent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from engine.imaging.geometry import mask_polygons_xy, polygon_to_mask
from engine.imaging.masks import decode_rle, mask_iou, mask_to_region
from engine.labelstudio.annotations import AnnotatedRegion, results_to_regions
from engine.labelstudio.config import LabelingConfig
from engine.review.scoring import DISPLAY_THRESHOLD
from engine.types import Box, Item, Mask, Region, Span, Suggestion

BOX_TOLERANCE_PX = 0.5
MASK_IOU_SAME = 0.99
POLYGON_SIMPLIFY_PX = 1.0  # what engine.labelstudio.results sends polygons with


def parse_results(
    results: Sequence[Any], config: LabelingConfig | None, item: Item
) -> tuple[list[AnnotatedRegion], list[str]]:
    """Regions of the results that fit ``item``, and one message per result that does not
    (offsets outside the text, a label the config lacks, a box on a text...)."""
    text = item.text if item.kind == "text" else None
    regions: list[AnnotatedRegion] = []
    errors: list[str] = []
    for result in results:
        where = f"result {result.get('id')!r}" if isinstance(result, Mapping) else "a result"
        try:
            if not isinstance(result, Mapping):
                raise ValueError("is not a JSON object")
            parsed = results_to_regions([result], config, text=text)
            for region in parsed:
                _check_fits(item, region.region)
        except ValueError as exc:
            errors.append(f"item {item.item_id!r}: {where} not used: {exc}")
            continue
        regions.extend(parsed)
    return regions, errors


def _check_fits(item: Item, region: Region | None) -> None:
    if isinstance(region, Span) and item.kind != "text":
        raise ValueError(f"a span cannot label image item {item.item_id!r}")
    if isinstance(region, Box | Mask) and item.kind != "image":
        raise ValueError(f"a {region.kind} cannot label text item {item.item_id!r}")


def was_shown(suggestion: Suggestion, config: LabelingConfig | None) -> bool:
    """Whether ``/predict`` showed the suggestion: score at least ``DISPLAY_THRESHOLD``
    and a class the config maps to a control (any class without a config)."""
    if suggestion.score < DISPLAY_THRESHOLD:
        return False
    if config is None:
        return True
    region = suggestion.region
    if isinstance(region, Box):
        types: tuple[str, ...] = ("rectanglelabels",)
    elif isinstance(region, Mask):
        types = ("brushlabels", "polygonlabels", "rectanglelabels")
    elif isinstance(region, Span):
        types = ("labels",)
    else:
        types = ("choices",)
    return any(c.label_for(suggestion.label) for c in config.controls_of(*types))


def same_label(
    suggestion: Suggestion, region: AnnotatedRegion, config: LabelingConfig | None
) -> bool:
    if config is None:
        return region.label.casefold() == suggestion.label.casefold()
    mapped = config.control(region.from_name).label_for(suggestion.label)
    return mapped is not None and mapped.value == region.label


def first_change(
    suggestion: Suggestion, regions: Sequence[AnnotatedRegion], config: LabelingConfig | None
) -> AnnotatedRegion | None:
    """The first region that differs from the suggestion (polygon parts joined), else None."""
    polygons = [r for r in regions if r.result_type == "polygonlabels"]
    candidates = [r for r in regions if r.result_type != "polygonlabels"]
    if polygons:
        candidates.append(_joined(polygons))
    for region in candidates:
        if not (same_label(suggestion, region, config) and same_geometry(suggestion, region)):
            return region
    return None


def _joined(parts: Sequence[AnnotatedRegion]) -> AnnotatedRegion:
    masks = [p.region for p in parts if isinstance(p.region, Mask)]
    shapes = {(m.height_px, m.width_px) for m in masks}
    if len(masks) < 2 or len(shapes) != 1:
        return parts[0]
    pixels = np.logical_or.reduce([decode_rle(m.mask_rle, m.height_px, m.width_px) for m in masks])
    return replace(parts[0], region=mask_to_region(pixels))


def same_geometry(suggestion: Suggestion, annotated: AnnotatedRegion) -> bool:
    ours, theirs = suggestion.region, annotated.region
    if isinstance(ours, Span) and isinstance(theirs, Span):
        return (ours.start, ours.end) == (theirs.start, theirs.end)
    if annotated.result_type == "rectanglelabels" and isinstance(theirs, Box):
        box = ours.box if isinstance(ours, Mask) else ours
        if not isinstance(box, Box):
            return False
        return max(abs(a - b) for a, b in zip(box.box_xyxy, theirs.box_xyxy, strict=True)) <= (
            BOX_TOLERANCE_PX
        )
    if isinstance(ours, Mask) and isinstance(theirs, Mask):
        return _same_mask(ours, theirs, as_polygons=annotated.result_type == "polygonlabels")
    return ours is None and theirs is None


def _same_mask(ours: Mask, theirs: Mask, *, as_polygons: bool) -> bool:
    size = (ours.height_px, ours.width_px)
    if size != (theirs.height_px, theirs.width_px):
        return False
    pixels = decode_rle(ours.mask_rle, *size)
    if as_polygons:  # compare with the outlines that were sent, not the raw mask
        outlines = mask_polygons_xy(pixels, simplify_px=POLYGON_SIMPLIFY_PX)
        pixels = np.zeros(size, dtype=bool)
        for points in outlines:
            pixels |= polygon_to_mask(points, *size)
    return mask_iou(pixels, decode_rle(theirs.mask_rle, *size)) >= MASK_IOU_SAME
