"""Label Studio's interactive mode: the annotator's clicks / box -> one brush region.

``params.context.result`` holds what the annotator just drew with a "smart"
tool: ``keypointlabels`` (``value.x`` / ``value.y`` in percent; ``is_positive``,
default true, false for a negative click; several points allowed) and / or a
``rectanglelabels`` box (percent ``x``, ``y``, ``width``, ``height``; rotation is
ignored, the last box wins). They become a pixel prompt for the segmenter
(a box-trained model such as LiteMedSAM turns clicks into a box), and the mask
comes back as exactly one ``brushlabels`` region in Label Studio's RLE. Its
label is the clicked label when the ``BrushLabels`` control has it, else that
control's first label.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.labelstudio.brush_rle import mask_to_brush_rle
from engine.labelstudio.config import ControlTag, LabelingConfig
from engine.labelstudio.predict import failed, log_failure
from engine.labelstudio.protocol import LsPredictionOut, LsTaskIn
from engine.labelstudio.tasks import TaskItem
from engine.segment.embeddings import item_image_key
from engine.segment.service import InteractiveSegmenter, SegmentRequest
from engine.store import Store

_PROMPT_TYPES = ("keypointlabels", "rectanglelabels")


@dataclass(frozen=True)
class InteractivePrompt:
    """A prompt in image pixels, plus the label and object the annotator used."""

    points_xy: list[tuple[float, float]] | None
    point_labels: list[int] | None
    box_xyxy: tuple[float, float, float, float] | None
    label: str | None
    to_name: str | None


def segment_tasks(
    store: Store,
    segmenter: InteractiveSegmenter,
    config: LabelingConfig,
    context: Sequence[dict[str, Any]],
    tasks: Sequence[LsTaskIn],
    loaded: Sequence[TaskItem | None],
    *,
    project: str | None,
) -> list[LsPredictionOut]:
    """One prediction per task holding one brush region (``[]`` where a task failed).

    Call ``check_request`` first: a config or context that cannot work is an
    error for the whole request, not for one task.
    """
    version = segmenter.model.version
    outs = []
    for task, entry in zip(tasks, loaded, strict=True):
        if entry is None:  # its media failed (logged)
            outs.append(failed(version))
            continue
        try:
            outs.append(_segment(store, segmenter, entry, config, context, version))
        except Exception as exc:
            log_failure(task, project, exc)
            outs.append(failed(version))
    return outs


def check_request(config: LabelingConfig, context: Sequence[dict[str, Any]]) -> None:
    """``ValueError`` unless the config has a BrushLabels control and the context a prompt."""
    brush_control(config, None)
    parse_prompt(context, (100, 100))


def _segment(
    store: Store,
    segmenter: InteractiveSegmenter,
    entry: TaskItem,
    config: LabelingConfig,
    context: Sequence[dict[str, Any]],
    version: str,
) -> LsPredictionOut:
    if entry.size_px is None:
        raise ValueError(f"item {entry.item.item_id!r} is not an image")
    prompt = parse_prompt(context, entry.size_px)
    control = brush_control(config, prompt.to_name)
    # Encode the pixels in hand under the segmenter's own cache key, so it never
    # reads the file: the media folder may lie outside the data roots it is confined to.
    model = segmenter.model
    key = item_image_key(entry.item.item_id, store.content_sha256(entry.item.item_id))
    if (key, model.version) not in model.cache:  # decode only when not in memory
        model.embed(key, entry.image)
    result = segmenter.segment(
        store,
        SegmentRequest(
            item_id=entry.item.item_id,
            points_xy=prompt.points_xy,
            point_labels=prompt.point_labels,
            box_xyxy=prompt.box_xyxy,
            multimask=False,
        ),
    )
    mask = result.masks[0]
    region = brush_result(mask.mask, control, prompt.label, mask.predicted_iou)
    uncertainty = min(max(1.0 - min(mask.predicted_iou, mask.stability_score), 0.0), 1.0)
    return LsPredictionOut(result=[region], score=uncertainty, model_version=version)


def brush_control(config: LabelingConfig, to_name: str | None) -> ControlTag:
    """The ``BrushLabels`` control that receives the mask (the one on ``to_name`` first)."""
    controls = config.controls_of("brushlabels")
    if not controls:
        found = ", ".join(f"<{c.tag}>" for c in config.controls)
        raise ValueError(
            "interactive segmentation needs a <BrushLabels> control on the image; "
            f"the labeling config has {found}"
        )
    return next((c for c in controls if c.to_name == to_name), controls[0])


def parse_prompt(
    context_results: Sequence[dict[str, Any]], size_px: tuple[int, int]
) -> InteractivePrompt:
    """Pixel prompt from the context regions; ``ValueError`` when none can prompt."""
    width_px, height_px = size_px
    points: list[tuple[float, float]] = []
    labels: list[int] = []
    box: tuple[float, float, float, float] | None = None
    label: str | None = None
    to_name: str | None = None
    for n, region in enumerate(context_results):
        kind = region.get("type")
        if kind not in _PROMPT_TYPES:
            continue
        value = region.get("value")
        if not isinstance(value, dict):
            raise ValueError(f"context.result[{n}] ({kind}) has no value object")
        x = _percent(value, "x", n) / 100.0 * width_px
        y = _percent(value, "y", n) / 100.0 * height_px
        if kind == "keypointlabels":
            points.append((_clip(x, width_px), _clip(y, height_px)))
            labels.append(0 if region.get("is_positive", True) is False else 1)
        else:
            x2 = x + _percent(value, "width", n) / 100.0 * width_px
            y2 = y + _percent(value, "height", n) / 100.0 * height_px
            box = (
                _clip(x, width_px),
                _clip(y, height_px),
                _clip(x2, width_px),
                _clip(y2, height_px),
            )
            if box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"context.result[{n}] is an empty rectangle inside the image")
        names = value.get(kind)
        if isinstance(names, list) and names and isinstance(names[0], str):
            label = names[0]
        to_name = region.get("to_name") or to_name
    if not points and box is None:
        found = sorted({str(r.get("type")) for r in context_results}) or ["nothing"]
        raise ValueError(
            "interactive context holds no keypointlabels or rectanglelabels region to "
            f"segment from (found: {', '.join(found)})"
        )
    return InteractivePrompt(
        points or None, labels or None, box, label, to_name if isinstance(to_name, str) else None
    )


def brush_result(
    mask: npt.NDArray[np.bool_], control: ControlTag, label: str | None, score: float
) -> dict[str, Any]:
    """One ``brushlabels`` region holding ``mask`` (``HxW`` bool, original pixels)."""
    chosen = None
    if label is not None:
        chosen = control.label_of_result(label) or control.label_for(label)
    label_value = (chosen or control.labels[0]).result_value
    height_px, width_px = mask.shape
    return {
        "id": f"i{uuid.uuid4().hex[:10]}",
        "from_name": control.name,
        "to_name": control.to_name,
        "type": "brushlabels",
        "original_width": int(width_px),
        "original_height": int(height_px),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask_to_brush_rle(mask), "brushlabels": [label_value]},
        "score": min(max(float(score), 0.0), 1.0),
        "readonly": False,
    }


def _percent(value: dict[str, Any], key: str, n: int) -> float:
    number = value.get(key)
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise ValueError(
            f"context.result[{n}].value.{key} must be a number (percent), got {number!r}"
        )
    return float(number)


def _clip(value: float, limit: int) -> float:
    return min(max(value, 0.0), float(limit))
