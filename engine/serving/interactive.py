"""Click-to-segment service: cached image embedding, decoder-only clicks.

The segmenter is built once per process, on first use or at startup, from
``settings.interactive_model``; its embedding cache is keyed by the image's
content hash and the model version, so an image already encoded (by an
earlier click, another editor, or a pre-encode job sharing the disk tier) is
never encoded again. Detector boxes stored for the item are offered as
candidates when a box-trained model must turn a click into a box.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.config import Settings, get_model_spec
from engine.imaging import decode_image
from engine.paths import read_confined
from engine.store import Store
from engine.types import Box

if TYPE_CHECKING:
    from engine.models.sam_results import MaskResult
    from engine.models.sam_segmenter import SamSegmenter

CANDIDATE_MIN_SCORE = 0.25


@dataclass(frozen=True)
class SegmentRequest:
    item_id: str
    points_xy: Sequence[Sequence[float]] | None
    point_labels: Sequence[int] | None
    box_xyxy: Sequence[float] | None
    multimask: bool


@dataclass(frozen=True)
class SegmentResult:
    masks: list[MaskResult]
    model_version: str
    encode_ms: float | None  # None: the embedding came from the cache
    decode_ms: float
    image_size_hw: tuple[int, int]


class InteractiveSegmenter:
    """Thread-safe wrapper that owns one ``SamSegmenter`` for the server."""

    def __init__(self, settings: Settings, build: Callable[[], SamSegmenter] | None = None) -> None:
        self._settings = settings
        self._build = build or self._build_from_settings
        self._model: SamSegmenter | None = None
        self._lock = threading.Lock()

    def _build_from_settings(self) -> SamSegmenter:
        from engine.models.sam_segmenter import SamSegmenter

        spec = get_model_spec(self._settings, self._settings.interactive_model)
        if spec.family != "sam":
            raise ValueError(
                f"interactive_model {spec.name!r} is a {spec.family} model, not a segmenter"
            )
        return SamSegmenter.from_spec(spec, self._settings.resolved_models_dir)

    @property
    def model(self) -> SamSegmenter:
        with self._lock:
            if self._model is None:
                self._model = self._build()
            return self._model

    def stats(self) -> dict[str, Any]:
        if self._model is None:
            return {"loaded": False}
        return {
            "loaded": True,
            "model_version": self._model.version,
            "encoder_calls": self._model.encoder_calls,
            **self._model.cache.stats(),
        }

    def segment(self, store: Store, request: SegmentRequest) -> SegmentResult:
        model = self.model
        item = store.get_item(request.item_id)
        if item.kind != "image" or item.uri is None:
            raise ValueError(f"item {item.item_id!r} is a {item.kind} item, not an image")
        from engine.models.embedding_cache import image_key

        key = store.content_sha256(item.item_id) or item.item_id
        embedding = model.cache.get((image_key(key), model.version))
        encode_ms = None
        if embedding is None:
            start = time.perf_counter()
            data = read_confined(
                item.uri,
                self._settings.resolved_data_roots,
                max_bytes=self._settings.max_image_pixels * 4,
            )
            image = decode_image(data, max_pixels=self._settings.max_image_pixels, source=item.uri)
            embedding = model.embed(key, image)
            encode_ms = (time.perf_counter() - start) * 1000.0
        start = time.perf_counter()
        masks = model.segment(
            embedding,
            points_xy=request.points_xy,
            point_labels=request.point_labels,
            box_xyxy=request.box_xyxy,
            multimask=request.multimask,
            candidate_boxes_xyxy=_candidate_boxes(store, item.item_id),
        )
        decode_ms = (time.perf_counter() - start) * 1000.0
        return SegmentResult(masks, model.version, encode_ms, decode_ms, embedding.original_size_hw)


def _candidate_boxes(store: Store, item_id: str) -> list[list[float]] | None:
    boxes = [
        list(r.suggestion.region.box_xyxy)
        for r in store.suggestions_for(item_id, min_score=CANDIDATE_MIN_SCORE)
        if isinstance(r.suggestion.region, Box) and r.status != "rejected"
    ]
    return boxes or None
