"""Detector -> segmenter chaining: every confident box of an image becomes a mask.

``ChainedModel`` is a ``Model`` (``predict(items, images)``) made of a detector
and a ``SamSegmenter``. Per batch: the detector predicts boxes; the segmenter
encodes each image once (``embed_many``: batched on GPU, reused from the disk
tier when the spec has one) and decodes all the kept boxes of an image in one
batched decoder call (``segment_boxes``).

The combined ``Prediction`` (``model_version`` = the job's chained version,
``chained_version``) holds the detector's suggestions unchanged
(indices ``0..n-1``, detector model fields) followed by one ``Mask``
suggestion per box scoring at least ``min_box_score``:

- ``parent_index`` = the index of its box; label = the box's label; model
  fields = the segmenter's;
- ``score`` = box score x clip(predicted IoU, 0, 1), so a mask never shows
  more confidence than its box (0.0 for an empty mask);
- attributes ``predicted_iou``, ``stability_score``,
  ``multimask_disagreement`` (multimask only), ``box_score``, ``area_px``,
  ``mask_index``;
- its ``probs`` row is its box's class distribution, and so are its rows of
  the detector's per-region ``signals`` (``tta_*``; other signals pass as
  they are) and its ``tta_*`` attributes.

The item's ``embedding`` is the detector's; when the detector gives none, the
segmenter's image embedding pooled over the image's cells
(``engine.models.sam.pooling``: 256 floats, L2-normalised).

Multimask (``multimask=None``: auto) decodes three masks per box, keeps the
one with the highest predicted IoU and reports their disagreement. Auto turns
it on for segmenters that take point prompts (real SAM checkpoints, whose
three outputs are trained) and off for box-trained LiteMedSAM: only its
single-mask output was trained (on bus.jpg its multimask picks had predicted
IoU ~0.2 and stability 0.0, the single masks 0.7-0.9 and 0.5-0.8).

The segmenter's in-memory embedding cache is replaced by a zero-byte one: in
a batch job every image is encoded once and never asked for again, so
keeping embeddings would only grow the actor's memory (the disk tier, if
configured, is kept: it is how a job pre-encodes for the server). With
``keep_cache=True`` (the server's chain, which shares the interactive
segmenter) the segmenter's cache is left as it is, so an image the chain
encoded answers the editor's first click with the decoder alone; key the
items as the interactive path does (``metadata["key"]`` = the content hash).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engine.config import ConfigError
from engine.models.sam.pooling import pooled_embedding
from engine.models.versioning import config_hash
from engine.types import Box, Item, Prediction, Suggestion

if TYPE_CHECKING:
    from engine.models.base import Model
    from engine.models.sam.embedding_cache import Embedding
    from engine.models.sam.results import MaskResult
    from engine.models.sam.segmenter import SamSegmenter

MAX_VERSION_CHARS = 128  # predictions.model_version column
MIN_BOX_SIDE_PX = 1.0  # narrower boxes (after clipping to the image) get no mask
# per-region signals of a detection and the axis that runs over its regions
REGION_SIGNAL_AXES = {"tta_probs": 1, "tta_variation_ratio": 0, "tta_iou_spread": 0}


class ChainedModel:
    """Detector boxes -> segmenter masks, as one model (see the module doc)."""

    def __init__(
        self,
        detector: Model,
        segmenter: SamSegmenter,
        *,
        version: str,
        min_box_score: float = 0.25,
        multimask: bool | None = None,
        keep_cache: bool = False,
    ) -> None:
        if not 0.0 <= min_box_score <= 1.0:
            raise ValueError(f"min_box_score must be in [0, 1], got {min_box_score}")
        self.detector, self.segmenter = detector, segmenter
        self.name = f"{detector.name}+{segmenter.name}"
        self.version = version
        self.min_box_score = min_box_score
        self.multimask = segmenter.accepts_point_prompts if multimask is None else multimask
        if not keep_cache:  # memory off; the disk tier (and its byte bound) is kept
            segmenter.cache = segmenter.cache.resized(0)

    def predict(
        self, items: Sequence[Item], inputs: Sequence[Any] | None = None
    ) -> list[Prediction]:
        """``inputs``: one ``HxWx3`` uint8 image per item (required).

        An item's ``metadata["key"]`` (else its id) keys its embedding.
        """
        if inputs is None or len(inputs) != len(items):
            raise ValueError("ChainedModel.predict needs one decoded image per item")
        images = [np.asarray(image) for image in inputs]
        detections = self.detector.predict(items, images)
        start = time.perf_counter()
        keys = [str(item.metadata.get("key") or item.item_id) for item in items]
        embeddings = self.segmenter.embed_many(images, keys)
        embed_ms = (time.perf_counter() - start) * 1000.0 / max(len(items), 1)
        out = []
        for detection, embedding in zip(detections, embeddings, strict=True):
            start = time.perf_counter()
            parents, boxes = self.boxes_to_segment(detection, embedding.original_size_hw)
            results = (
                self.segmenter.segment_boxes(embedding, boxes, multimask=self.multimask)
                if parents
                else []
            )
            decode_ms = (time.perf_counter() - start) * 1000.0
            timings = {"mask_embed_ms": embed_ms, "mask_decode_ms": decode_ms}
            out.append(self.combine(detection, embedding, parents, results, timings))
        return out

    def boxes_to_segment(
        self, detection: Prediction, image_hw: tuple[int, int]
    ) -> tuple[list[int], npt.NDArray[np.float32]]:
        """Indices of the box suggestions to segment and their boxes clipped to the image."""
        height, width = image_hw
        parents, boxes = [], []
        for index, suggestion in enumerate(detection.suggestions):
            region = suggestion.region
            if not isinstance(region, Box) or suggestion.score < self.min_box_score:
                continue
            x1, x2 = min(region.x1, width), min(region.x2, width)
            y1, y2 = min(region.y1, height), min(region.y2, height)
            if x2 - x1 < MIN_BOX_SIDE_PX or y2 - y1 < MIN_BOX_SIDE_PX:
                continue
            parents.append(index)
            boxes.append((x1, y1, x2, y2))
        return parents, np.asarray(boxes, dtype=np.float32).reshape(-1, 4)

    def combine(
        self,
        detection: Prediction,
        embedding: Embedding,
        parents: list[int],
        results: Sequence[MaskResult],
        timings_ms: dict[str, float],
    ) -> Prediction:
        """The detection plus one mask suggestion per segmented box."""
        masks = [
            self._mask_suggestion(detection.suggestions[parent], parent, result)
            for parent, result in zip(parents, results, strict=True)
        ]
        rows = detection.probs[parents] if parents else detection.probs[:0]
        embedding_vector = detection.embedding
        if embedding_vector is None:  # the image embedding, pooled: for diversity sampling
            embedding_vector = pooled_embedding(embedding, self.segmenter.img_size)
        return Prediction(
            item_id=detection.item_id,
            model_name=self.name,
            model_version=self.version,
            suggestions=detection.suggestions + tuple(masks),
            probs=np.concatenate([detection.probs, rows]),
            class_names=detection.class_names,
            embedding=embedding_vector,
            timings_ms={**detection.timings_ms, **timings_ms},
            signals=chained_signals(detection, parents),
        )

    def _mask_suggestion(self, box: Suggestion, parent: int, result: MaskResult) -> Suggestion:
        iou = float(np.clip(result.predicted_iou, 0.0, 1.0))
        area_px = result.area_px
        attributes: dict[str, Any] = {
            "predicted_iou": result.predicted_iou,
            "stability_score": result.stability_score,
            "box_score": box.score,
            "area_px": area_px,
            "mask_index": result.mask_index,
        }
        if result.multimask_disagreement is not None:
            attributes["multimask_disagreement"] = result.multimask_disagreement
        attributes.update({k: v for k, v in box.attributes.items() if k.startswith("tta_")})
        return Suggestion(
            label=box.label,
            score=box.score * iou if area_px else 0.0,
            region=result.to_region(),
            model_name=self.segmenter.name,
            model_version=self.segmenter.version,
            attributes=attributes,
            parent_index=parent,
        )


def chained_signals(detection: Prediction, parents: list[int]) -> dict[str, npt.NDArray[Any]]:
    """The detection's signals with each mask's rows (its box's) after the boxes' rows."""
    out = dict(detection.signals)
    n = len(detection.suggestions)
    for name, axis in REGION_SIGNAL_AXES.items():
        value = out.get(name)
        if value is not None and value.ndim > axis and value.shape[axis] == n:
            extra = np.take(value, np.asarray(parents, dtype=np.int64), axis=axis)
            out[name] = np.concatenate([value, extra], axis=axis)
    return out


def chained_version(
    detector: str, segmenter: str, min_box_score: float, multimask: bool | None
) -> str:
    """``<detector>+<segmenter>-<8 hex of the mask settings>``."""
    settings = config_hash({"mask_min_box_score": min_box_score, "mask_multimask": multimask})
    version = f"{detector}+{segmenter}-{settings}"
    if len(version) > MAX_VERSION_CHARS:
        raise ConfigError(
            f"chained model version {version!r} is longer than {MAX_VERSION_CHARS} characters; "
            "use shorter model names"
        )
    return version
