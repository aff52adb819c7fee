"""Batch pre-labeling glue for ``SamSegmenter.predict``: box prompts in, Predictions out.

Each input aligned with an item is a ``BoxPrompts`` or a tuple
``(image, boxes_xyxy)`` / ``(image, boxes_xyxy, labels)``: an ``HxWx3`` uint8
image, ``[n, 4]`` boxes in pixels (e.g. a detector's suggestions; n may be 0)
and optional labels (the detector's class names, default ``"object"``).
Suggestion ``i`` of the Prediction is the mask for box ``i``
(``parent_index = i``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engine.models.sam.prompts import check_boxes
from engine.types import Item, Prediction, Suggestion

if TYPE_CHECKING:
    from engine.models.sam.embedding_cache import Embedding
    from engine.models.sam.results import MaskResult

DEFAULT_LABEL = "object"


@dataclass(frozen=True, eq=False)
class BoxPrompts:
    """One item's image and the boxes to segment in it."""

    image: npt.NDArray[np.uint8]
    boxes_xyxy: npt.ArrayLike
    labels: Sequence[str] | None = None


@dataclass(frozen=True, eq=False)
class ItemPrompts:
    item: Item
    image: npt.NDArray[np.uint8]
    boxes_xyxy: npt.NDArray[np.float32]
    labels: tuple[str, ...]


def check_image(image: Any) -> npt.NDArray[np.uint8]:
    """An ``HxWx3`` uint8 array, or ``ValueError`` saying what is wrong."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array (HxWx3 uint8), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must have shape HxWx3 (RGB), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0-255), got dtype {image.dtype}")
    return image


def parse_inputs(items: Sequence[Item], inputs: Sequence[Any] | None) -> list[ItemPrompts]:
    """Validate ``inputs`` (see the module doc) against ``items``."""
    if inputs is None:
        raise ValueError(
            "SamSegmenter.predict needs inputs: one BoxPrompts or (image, boxes_xyxy[, labels]) "
            "per item"
        )
    parsed = []
    for item, raw in zip(items, inputs, strict=True):
        if isinstance(raw, BoxPrompts):
            image, boxes, labels = raw.image, raw.boxes_xyxy, raw.labels
        elif isinstance(raw, tuple) and len(raw) in (2, 3):
            image, boxes = raw[0], raw[1]
            labels = raw[2] if len(raw) == 3 else None
        else:
            raise ValueError(
                f"input for item {item.item_id!r} must be BoxPrompts or (image, boxes_xyxy"
                f"[, labels]), got {type(raw).__name__}"
            )
        image = check_image(image)
        try:
            checked = check_boxes(boxes, image.shape[:2])
        except ValueError as exc:
            raise ValueError(f"item {item.item_id!r}: {exc}") from exc
        names = tuple(labels) if labels is not None else (DEFAULT_LABEL,) * len(checked)
        if len(names) != len(checked):
            raise ValueError(f"item {item.item_id!r}: {len(names)} labels for {len(checked)} boxes")
        parsed.append(ItemPrompts(item, image, checked, names))
    return parsed


def to_prediction(
    prompts: ItemPrompts,
    embedding: Embedding,
    results: Sequence[MaskResult],
    model_name: str,
    model_version: str,
) -> Prediction:
    """One Prediction: a Mask suggestion per box, ``probs`` of shape ``[n, 0]``."""
    suggestions = []
    for index, (result, label) in enumerate(zip(results, prompts.labels, strict=True)):
        attributes: dict[str, Any] = {
            "predicted_iou": result.predicted_iou,
            "stability_score": result.stability_score,
            "parent_box_index": index,
            "prompt_box_xyxy": list(prompts.boxes_xyxy[index].tolist()),
            "area_px": result.area_px,
        }
        if result.multimask_disagreement is not None:
            attributes["multimask_disagreement"] = result.multimask_disagreement
        suggestions.append(
            Suggestion(
                label=label,
                score=float(np.clip(result.predicted_iou, 0.0, 1.0)),
                region=result.to_region(),
                model_name=model_name,
                model_version=model_version,
                attributes=attributes,
                parent_index=index,
            )
        )
    pooled = embedding.features.float().mean(dim=(0, 2, 3)).cpu().numpy()
    return Prediction(
        item_id=prompts.item.item_id,
        model_name=model_name,
        model_version=model_version,
        suggestions=tuple(suggestions),
        probs=np.zeros((len(suggestions), 0), dtype=np.float32),
        embedding=pooled,
    )
