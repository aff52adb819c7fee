"""The Label Studio edge: our suggestions -> LS result regions, LS annotations -> our regions.

Percent coordinates exist only here: a Label Studio image result gives ``x``,
``y``, ``width``, ``height`` (or polygon ``points``) in percent of
``original_width`` / ``original_height``; ours are absolute pixels.

- ``Box`` -> ``rectanglelabels``; ``Mask`` -> ``brushlabels`` (brush RLE) and
  ``polygonlabels`` (outer outlines), or its box when the config has only
  rectangles; ``Span`` -> ``labels`` (``start``, ``end``, ``text``); no region
  (a whole-item class) -> ``choices``. A model class reaches a control through
  ``ControlTag.label_for`` (value, alias, ``predicted_values``); unmapped
  classes are skipped.
- Back: ``rectanglelabels`` (rotation -> its axis-aligned bounds),
  ``brushlabels``, ``polygonlabels`` (-> ``Mask``), ``keypointlabels`` (-> a
  zero-size ``Box`` at the point), ``labels`` (-> ``Span``), ``choices`` (-> no
  region); other result types (``textarea``, ``rating``, relations) are skipped.

Region ids are ``s<suggestion_id>`` (``s12``; a suggestion that becomes several
results, e.g. a brush and polygon parts, continues ``s12.1``, ``s12.2``...), so
an annotation that kept a predicted region names the suggestion it judged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from engine.imaging.geometry import mask_polygons_xy
from engine.imaging.masks import decode_rle
from engine.labelstudio.annotations import (
    AnnotatedRegion,
    results_to_regions,
    suggestion_id_of,
)
from engine.labelstudio.brush_rle import mask_to_brush_rle
from engine.labelstudio.config import (
    ControlTag,
    LabelingConfig,
    LabelValue,
    ObjectTag,
    parse_labeling_config,
)
from engine.types import Box, Mask, Span, Suggestion

__all__ = [
    "AnnotatedRegion",
    "ControlTag",
    "LabelValue",
    "LabelingConfig",
    "ObjectTag",
    "merge_choice_results",
    "parse_labeling_config",
    "region_id",
    "results_to_regions",
    "suggestion_id_of",
    "suggestion_to_results",
    "task_score",
    "to_ls_prediction",
]

ImageSize = tuple[int, int]  # (width_px, height_px)


def task_score(item_score: float | None) -> float:
    """The score Label Studio shows for a task's prediction: our item score, unchanged.

    Higher = label first (the queue's order), so sorting the Data Manager by
    prediction score, descending, puts the most useful tasks first. A placeholder
    for a calibrated mapping; an item never scored gets 0.0.
    """
    if item_score is None:
        return 0.0
    if not math.isfinite(item_score):
        raise ValueError(f"item score must be finite, got {item_score}")
    return float(item_score)


def region_id(suggestion_id: int | None, index: int) -> str:
    """Result id for a suggestion: ``s<id>`` when stored, else ``r<index>``."""
    return f"s{suggestion_id}" if suggestion_id is not None else f"r{index}"


# -- ours -> Label Studio -------------------------------------------------------


def suggestion_to_results(
    suggestion: Suggestion,
    config: LabelingConfig,
    *,
    image_size_px: ImageSize | None = None,
    result_id: str = "r0",
    text: str | None = None,
    simplify_px: float = 1.0,
) -> list[dict[str, Any]]:
    """Label Studio result dicts for one suggestion (empty when its class maps nowhere).

    ``image_size_px`` (width, height) is needed for boxes; a mask carries its
    own. ``text`` (the item's text) fills and checks span results.
    """
    region = suggestion.region
    if isinstance(region, Box):
        results = _box_results(suggestion, region, config, _size_for_box(image_size_px), result_id)
    elif isinstance(region, Mask):
        _check_mask_size(region, image_size_px)
        results = _mask_results(suggestion, region, config, result_id, simplify_px)
    elif isinstance(region, Span):
        results = _span_results(suggestion, region, config, result_id, text)
    else:
        results = [
            _result(c, "choices", result_id, {"choices": [label]}, suggestion.score)
            for c, label in _mapped(config.controls_of("choices"), suggestion.label)
        ]
    for n, result in enumerate(results[1:], start=1):  # Label Studio joins results by id
        result["id"] = f"{result_id}.{n}"
    return results


def to_ls_prediction(
    suggestions: Sequence[Suggestion],
    config: LabelingConfig,
    *,
    model_version: str,
    item_score: float | None = None,
    image_size_px: ImageSize | None = None,
    suggestion_ids: Sequence[int | None] | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """One Label Studio prediction (``result``, ``score``, ``model_version``) for an item."""
    if suggestion_ids is not None and len(suggestion_ids) != len(suggestions):
        raise ValueError("suggestion_ids must align with suggestions")
    ids = suggestion_ids if suggestion_ids is not None else [None] * len(suggestions)
    results: list[dict[str, Any]] = []
    for index, (suggestion, sid) in enumerate(zip(suggestions, ids, strict=True)):
        results.extend(
            suggestion_to_results(
                suggestion,
                config,
                image_size_px=image_size_px,
                result_id=region_id(sid, index),
                text=text,
            )
        )
    return {
        "model_version": model_version,
        "score": task_score(item_score),
        "result": merge_choice_results(results),
    }


def _mapped(controls: Sequence[ControlTag], class_name: str) -> list[tuple[ControlTag, str]]:
    """Controls that know ``class_name``, with the label value their results carry."""
    pairs = [(c, c.label_for(class_name)) for c in controls]
    return [(c, label.result_value) for c, label in pairs if label is not None]


def _result(
    control: ControlTag,
    result_type: str,
    result_id: str,
    value: dict[str, Any],
    score: float,
    size: ImageSize | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": result_id,
        "from_name": control.name,
        "to_name": control.to_name,
        "type": result_type,
        "value": value,
        "score": score,
    }
    if size is not None:
        result.update(original_width=size[0], original_height=size[1], image_rotation=0)
    return result


def _percent_box(box: Box, size: ImageSize) -> dict[str, float]:
    width_px, height_px = size
    return {
        "x": box.x1 / width_px * 100.0,
        "y": box.y1 / height_px * 100.0,
        "width": (box.x2 - box.x1) / width_px * 100.0,
        "height": (box.y2 - box.y1) / height_px * 100.0,
        "rotation": 0.0,
    }


def _box_results(
    suggestion: Suggestion, box: Box, config: LabelingConfig, size: ImageSize, result_id: str
) -> list[dict[str, Any]]:
    if box.x2 > size[0] + 1e-6 or box.y2 > size[1] + 1e-6:
        raise ValueError(f"box {box.box_xyxy} lies outside the {size[0]}x{size[1]} image")
    return [
        _result(
            c,
            "rectanglelabels",
            result_id,
            {**_percent_box(box, size), "rectanglelabels": [label]},
            suggestion.score,
            size,
        )
        for c, label in _mapped(config.controls_of("rectanglelabels"), suggestion.label)
    ]


def _mask_results(
    suggestion: Suggestion, mask: Mask, config: LabelingConfig, result_id: str, simplify_px: float
) -> list[dict[str, Any]]:
    size = (mask.width_px, mask.height_px)
    brush = _mapped(config.controls_of("brushlabels"), suggestion.label)
    polygon = _mapped(config.controls_of("polygonlabels"), suggestion.label)
    if not brush and not polygon:
        return _box_results(suggestion, mask.box, config, size, result_id)
    pixels = decode_rle(mask.mask_rle, mask.height_px, mask.width_px)
    results: list[dict[str, Any]] = []
    if brush:
        rle = mask_to_brush_rle(pixels)
        for control, label in brush:
            brush_value = {"format": "rle", "rle": rle, "brushlabels": [label]}
            results.append(
                _result(control, "brushlabels", result_id, brush_value, suggestion.score, size)
            )
    polygons = mask_polygons_xy(pixels, simplify_px=simplify_px) if polygon else []
    for control, label in polygon:
        for points in polygons:
            points_pct = (points / [mask.width_px, mask.height_px] * 100.0).tolist()
            value = {
                "points": points_pct,
                "closed": True,
                "polygonlabels": [label],
            }
            results.append(
                _result(control, "polygonlabels", result_id, value, suggestion.score, size)
            )
    return results


def _span_results(
    suggestion: Suggestion, span: Span, config: LabelingConfig, result_id: str, text: str | None
) -> list[dict[str, Any]]:
    if text is not None:
        span.check_within(text)
    span_text = (
        span.text if span.text is not None else (text[span.start : span.end] if text else None)
    )
    results = []
    for control, label in _mapped(config.controls_of("labels"), suggestion.label):
        value: dict[str, Any] = {"start": span.start, "end": span.end, "labels": [label]}
        if span_text is not None:
            value["text"] = span_text
        results.append(_result(control, "labels", result_id, value, suggestion.score))
    return results


def merge_choice_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``choices`` result per control, holding every chosen value (in order)."""
    merged: list[dict[str, Any]] = []
    by_control: dict[str, dict[str, Any]] = {}
    for result in results:
        if result["type"] != "choices":
            merged.append(result)
            continue
        first = by_control.get(result["from_name"])
        if first is None:
            by_control[result["from_name"]] = result
            merged.append(result)
        elif result["value"]["choices"][0] not in first["value"]["choices"]:
            first["value"]["choices"].append(result["value"]["choices"][0])
            first["score"] = max(first["score"], result["score"])
    return merged


def _size_for_box(image_size_px: ImageSize | None) -> ImageSize:
    if image_size_px is None:
        raise ValueError("a box needs the image size (image_size_px=(width, height)) for percent")
    width_px, height_px = (int(v) for v in image_size_px)
    if width_px <= 0 or height_px <= 0:
        raise ValueError(f"image size must be positive, got {image_size_px}")
    return width_px, height_px


def _check_mask_size(mask: Mask, image_size_px: ImageSize | None) -> None:
    if image_size_px is not None and tuple(image_size_px) != (mask.width_px, mask.height_px):
        raise ValueError(
            f"mask is {mask.width_px}x{mask.height_px} but the image is "
            f"{image_size_px[0]}x{image_size_px[1]}"
        )
