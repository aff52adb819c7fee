"""Label Studio annotations -> our regions (absolute pixels), for feedback.

``rectanglelabels`` (a rotation becomes its axis-aligned bounds),
``brushlabels`` and ``polygonlabels`` (-> ``Mask``), ``keypointlabels`` (-> a
zero-size ``Box`` at the point), ``labels`` (-> ``Span``) and ``choices`` (-> no
region); other result types (``textarea``, ``rating``, relations) are skipped.
With a config, result labels (a label's alias, if it has one) become the
project's label values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.imaging.geometry import clipped_box, polygon_to_mask, rotated_box_bounds
from engine.imaging.masks import mask_to_region
from engine.labelstudio.brush_rle import brush_rle_to_mask
from engine.labelstudio.config import LabelingConfig
from engine.types import Box, Mask, Region, Span

ImageSize = tuple[int, int]  # (width_px, height_px)
_REGION_ID = re.compile(r"^s(\d+)(?:\.\d+)?$")


def suggestion_id_of(result_id: str | None) -> int | None:
    """The suggestion id inside a result id ``s<id>`` / ``s<id>.<n>``, else ``None``."""
    match = _REGION_ID.match(result_id or "")
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class AnnotatedRegion:
    """One labeled region of a Label Studio annotation, in our units."""

    label: str
    region: Region | None
    from_name: str
    result_type: str
    result_id: str | None
    suggestion_id: int | None


def results_to_regions(
    results: Sequence[Mapping[str, Any]],
    config: LabelingConfig | None = None,
    *,
    text: str | None = None,
) -> list[AnnotatedRegion]:
    """Our regions for an annotation's ``result`` list (one per label of each region).

    With ``config``, a result from an unknown control or with a label the
    control does not define is a ``ValueError``; ``text`` checks span offsets.
    """
    regions: list[AnnotatedRegion] = []
    for result in results:
        result_type = str(result.get("type", "")).lower()
        reader = _READERS.get(result_type)
        if reader is None:
            continue
        value = result.get("value")
        where = f"result {result.get('id')!r} ({result_type})"
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} has no value object")
        labels = value.get(result_type)
        if not isinstance(labels, list) or not labels:
            raise ValueError(f"{where} has no {result_type!r} list of labels")
        from_name = str(result.get("from_name", ""))
        labels = _project_labels(config, from_name, labels, where)
        region = reader(value, result, where, text)
        if region is None and result_type != "choices":
            continue  # an empty brush stroke
        result_id = result.get("id")
        rid = str(result_id) if result_id is not None else None
        regions.extend(
            AnnotatedRegion(str(label), region, from_name, result_type, rid, suggestion_id_of(rid))
            for label in labels
        )
    return regions


def _project_labels(
    config: LabelingConfig | None, from_name: str, labels: list[Any], where: str
) -> list[str]:
    """Result label values -> the project's label values (alias -> value) via the config."""
    if config is None:
        return [str(label) for label in labels]
    control = config.control(from_name)
    values = []
    for label in labels:
        found = control.label_of_result(str(label))
        if found is None:
            raise ValueError(f"{where}: label {label!r} is not defined in control {from_name!r}")
        values.append(found.value)
    return values


def _size(result: Mapping[str, Any], where: str) -> ImageSize:
    try:
        width_px, height_px = int(result["original_width"]), int(result["original_height"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where} lacks original_width/original_height") from exc
    if width_px <= 0 or height_px <= 0:
        raise ValueError(f"{where} has a non-positive original size {width_px}x{height_px}")
    return width_px, height_px


def _number(value: Mapping[str, Any], key: str, where: str) -> float:
    number = value.get(key)
    if not isinstance(number, int | float) or not math.isfinite(number):
        raise ValueError(f"{where} needs a finite number {key!r}, got {number!r}")
    return float(number)


def _read_rectangle(
    value: Mapping[str, Any], result: Mapping[str, Any], where: str, _t: Any
) -> Box:
    width_px, height_px = _size(result, where)
    x, y = _number(value, "x", where) * width_px / 100, _number(value, "y", where) * height_px / 100
    w = _number(value, "width", where) * width_px / 100
    h = _number(value, "height", where) * height_px / 100
    rotation = float(value.get("rotation") or 0.0)
    return clipped_box(*rotated_box_bounds(x, y, w, h, rotation), width_px, height_px)


def _read_keypoint(value: Mapping[str, Any], result: Mapping[str, Any], where: str, _t: Any) -> Box:
    width_px, height_px = _size(result, where)
    x, y = _number(value, "x", where) * width_px / 100, _number(value, "y", where) * height_px / 100
    return clipped_box(x, y, x, y, width_px, height_px)


def _read_brush(
    value: Mapping[str, Any], result: Mapping[str, Any], where: str, _t: Any
) -> Mask | None:
    width_px, height_px = _size(result, where)
    if value.get("format", "rle") != "rle" or "rle" not in value:
        raise ValueError(f"{where} needs format 'rle' with an 'rle' byte list")
    pixels = brush_rle_to_mask(value["rle"], height_px, width_px)
    return mask_to_region(pixels) if pixels.any() else None


def _read_polygon(
    value: Mapping[str, Any], result: Mapping[str, Any], where: str, _t: Any
) -> Mask | None:
    width_px, height_px = _size(result, where)
    points = value.get("points")
    if not isinstance(points, list) or len(points) < 3:
        raise ValueError(f"{where} needs at least 3 polygon points")
    try:
        points_xy = [(float(x) * width_px / 100, float(y) * height_px / 100) for x, y in points]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} has malformed polygon points") from exc
    pixels = polygon_to_mask(points_xy, height_px, width_px)
    return mask_to_region(pixels) if pixels.any() else None


def _read_span(value: Mapping[str, Any], _r: Any, where: str, text: str | None) -> Span:
    start, end = value.get("start"), value.get("end")
    if not isinstance(start, int) or not isinstance(end, int):
        raise ValueError(
            f"{where} needs integer character offsets start/end, got {start!r}, {end!r}"
        )
    span_text = value.get("text")
    span = Span(start, end, span_text if isinstance(span_text, str) else None)
    if text is not None:
        span.check_within(text)
    return span


def _read_choices(*_args: Any) -> None:
    return None


_READERS: dict[str, Any] = {
    "rectanglelabels": _read_rectangle,
    "keypointlabels": _read_keypoint,
    "brushlabels": _read_brush,
    "polygonlabels": _read_polygon,
    "labels": _read_span,
    "choices": _read_choices,
}
