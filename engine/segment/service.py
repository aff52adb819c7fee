"""Click-to-segment service: cached image embedding, decoder-only clicks.

The segmenter is built once per process, on first use, from
``settings.interactive_model``, with its embedding cache's disk tier in the
shared embedding directory (``engine.segment.embeddings``: the one the
``labelengine embed`` job fills). The cache is keyed by the image's content
hash and the model version, so an image already encoded (by an earlier
click, another editor, a prefetch, or a pre-encode job) is never encoded
again. Detector boxes stored for the item are offered as candidates when a
box-trained model must turn a click into a box.

Refinement: every returned mask gets a ``mask_id`` whose low-res logits are
kept (``MaskMemory``); a later request passes ``previous_mask_id``, or a
binary mask as COCO RLE (``engine.models.sam.mask_input``), as SAM's
``mask_input``.

Prefetch: after ``/queue/next`` leases an item, ``prefetch_after_lease``
queues the background encoding of that item and of the next
``settings.prefetch_items`` free items of the queue (``Prefetcher``), when the
segmenter is loaded (or ``load_for_prefetch`` says to load it for that).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.config import Settings, get_model_spec
from engine.imaging.decode import decode_image
from engine.paths import read_confined
from engine.review.queue import LeaseHeldError
from engine.segment.embeddings import item_image_key
from engine.segment.mask_memory import MaskMemory
from engine.segment.prefetch import Outcome, Prefetcher
from engine.store import ClickTarget, NotFoundError, Store
from engine.types import Item

if TYPE_CHECKING:
    from engine.models.sam.embedding_cache import Embedding
    from engine.models.sam.results import MaskResult
    from engine.models.sam.segmenter import SamSegmenter

CANDIDATE_MIN_SCORE = 0.25


@dataclass(frozen=True)
class SegmentRequest:
    item_id: str
    points_xy: Sequence[Sequence[float]] | None
    point_labels: Sequence[int] | None
    box_xyxy: Sequence[float] | None
    multimask: bool
    previous_mask_id: str | None = None
    mask_input_rle: tuple[tuple[int, int], str] | None = None  # ((H, W), COCO counts)
    # Who clicks, when someone else's live lease must stop them (annotators); None: anyone.
    respect_leases_of: str | None = None


@dataclass(frozen=True)
class SegmentResult:
    masks: list[MaskResult]
    mask_ids: list[str]
    model_version: str
    encode_ms: float | None  # None: the embedding came from the cache
    decode_ms: float
    image_size_hw: tuple[int, int]


class InteractiveSegmenter:
    """Thread-safe wrapper that owns one ``SamSegmenter`` for the server."""

    def __init__(
        self,
        settings: Settings,
        build: Callable[[], SamSegmenter] | None = None,
        *,
        load_for_prefetch: bool = False,
        mask_memory_entries: int = 128,
    ) -> None:
        self._settings = settings
        self._build = build or self._build_from_settings
        self._model: SamSegmenter | None = None
        self._lock = threading.Lock()
        self._load_for_prefetch = load_for_prefetch
        self._prefetcher = Prefetcher(self._prefetch_plan, self._prefetch_ensure)
        self._prefetch_not_loaded = 0
        self._count_lock = threading.Lock()  # not self._lock: a model build holds that one
        self.masks = MaskMemory(mask_memory_entries)

    def _build_from_settings(self) -> SamSegmenter:
        from engine.segment.embeddings import build_segmenter, embedding_dir

        spec = get_model_spec(self._settings, self._settings.interactive_model)
        if spec.family != "sam":
            raise ValueError(
                f"interactive_model {spec.name!r} is a {spec.family} model, not a segmenter"
            )
        disk_dir = embedding_dir(self._settings, spec)
        return build_segmenter(
            spec,
            self._settings.resolved_models_dir,
            disk_dir,
            disk_max_bytes=self._settings.embedding_dir_max_bytes,
        )

    @property
    def model(self) -> SamSegmenter:
        with self._lock:
            if self._model is None:
                self._model = self._build()
            return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def stats(self) -> dict[str, Any]:
        prefetch = {
            **self._prefetcher.stats(),
            "not_loaded": self._prefetch_not_loaded,
            "prefetch_items": self._settings.prefetch_items,
        }
        out: dict[str, Any] = {
            "loaded": self._model is not None,
            "prefetch": prefetch,
            "masks": self.masks.stats(),
        }
        if self._model is not None:
            disk_dir = self._model.cache.disk_dir
            out.update(
                model_version=self._model.version,
                encoder_calls=self._model.encoder_calls,
                embedding_dir=str(disk_dir) if disk_dir is not None else None,
                **self._model.cache.stats(),
            )
        return out

    # -- clicks -----------------------------------------------------------------------

    def segment(self, store: Store, request: SegmentRequest) -> SegmentResult:
        """Masks for one prompt; a warm click costs one store read (``Store.click_target``)
        and the decoder. Detector boxes are read only when a box-trained model must turn
        a click into a box."""
        model = self.model
        derive_box = (
            request.box_xyxy is None
            and request.points_xy is not None
            and not model.accepts_point_prompts
        )
        target = store.click_target(
            request.item_id, candidates_min_score=CANDIDATE_MIN_SCORE if derive_box else None
        )
        item = target.item
        _check_lease(target, request.respect_leases_of)
        previous = self._previous_logits(model, request)
        embedding, encode_ms = self._embedding(model, item, target.content_sha256)
        mask_input = (
            previous if previous is not None else self._rle_logits(model, embedding, request)
        )
        start = time.perf_counter()
        masks = model.segment(
            embedding,
            points_xy=request.points_xy,
            point_labels=request.point_labels,
            box_xyxy=request.box_xyxy,
            mask_input=mask_input,
            multimask=request.multimask,
            candidate_boxes_xyxy=[list(b) for b in target.candidate_boxes_xyxy] or None,
        )
        decode_ms = (time.perf_counter() - start) * 1000.0
        ids = [self.masks.put(item.item_id, model.version, m.low_res_logits) for m in masks]
        return SegmentResult(
            masks, ids, model.version, encode_ms, decode_ms, embedding.original_size_hw
        )

    def _embedding(
        self, model: SamSegmenter, item: Item, content_sha256: str | None
    ) -> tuple[Embedding, float | None]:
        """The item's embedding and the ms spent encoding it (None: it was cached)."""
        if item.kind != "image" or item.uri is None:
            raise ValueError(f"item {item.item_id!r} is a {item.kind} item, not an image")
        key = item_image_key(item.item_id, content_sha256)
        embedding = model.cache.get((key, model.version))
        if embedding is not None:
            return embedding, None
        start = time.perf_counter()
        data = read_confined(
            item.uri,
            self._settings.resolved_data_roots,
            max_bytes=self._settings.max_image_pixels * 4,
        )
        image = decode_image(data, max_pixels=self._settings.max_image_pixels, source=item.uri)
        embedding = model.embed(key, image)
        return embedding, (time.perf_counter() - start) * 1000.0

    def _previous_logits(self, model: SamSegmenter, request: SegmentRequest) -> Any | None:
        if request.previous_mask_id is None:
            return None
        stored = self.masks.get(request.previous_mask_id, model.version)
        if stored is None:
            raise NotFoundError(
                f"mask {request.previous_mask_id!r} is unknown or expired (this server keeps "
                f"the last {self.masks.max_entries} masks of model {model.version!r}); "
                "segment again without previous_mask_id, or send the mask as mask_input_rle"
            )
        if stored.item_id != request.item_id:
            raise ValueError(
                f"mask {request.previous_mask_id!r} belongs to item {stored.item_id!r}, "
                f"not {request.item_id!r}"
            )
        return stored.low_res_logits

    def _rle_logits(
        self, model: SamSegmenter, embedding: Embedding, request: SegmentRequest
    ) -> Any | None:
        if request.mask_input_rle is None:
            return None
        from engine.models.sam.mask_input import decode_rle_mask, mask_to_low_res_logits

        size_hw, counts = request.mask_input_rle
        if tuple(size_hw) != embedding.original_size_hw:
            height, width = embedding.original_size_hw
            raise ValueError(
                f"mask_input_rle.size is {list(size_hw)}, but the image is [{height}, {width}] "
                "(height, width): send a mask of the image's size"
            )
        mask = decode_rle_mask(counts, embedding.original_size_hw)
        return mask_to_low_res_logits(
            mask, embedding.input_size_hw, model.img_size, model.low_res_size
        )

    # -- prefetch ---------------------------------------------------------------------

    def prefetch_after_lease(self, store: Store, item_id: str) -> bool:
        """Queue background encoding around a just-leased item; never blocks or raises.

        True when a prefetch was queued. Nothing is done when
        ``settings.prefetch_items`` is 0, or when the segmenter is not loaded
        and ``load_for_prefetch`` is False.
        """
        if self._settings.prefetch_items <= 0:
            return False
        if self._model is None and not self._load_for_prefetch:
            with self._count_lock:
                self._prefetch_not_loaded += 1
            return False
        return self._prefetcher.request(store, item_id)

    def wait_prefetch(self, timeout_s: float = 30.0) -> bool:
        """Block until no prefetch is queued or running (for tests and benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while not self._prefetcher.idle():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Stop the prefetch worker."""
        self._prefetcher.close()

    def _prefetch_plan(self, store: Store, leased_id: str) -> list[str]:
        leased = store.get_item(leased_id)
        first = [leased_id] if leased.kind == "image" and leased.uri is not None else []
        upcoming = store.queued_images(
            self._settings.prefetch_items, exclude=frozenset({leased_id})
        )
        return first + [row.item_id for row in upcoming]

    def _prefetch_ensure(self, store: Store, item_id: str) -> Outcome:
        target = store.click_target(item_id, candidates_min_score=None)
        _, encode_ms = self._embedding(self.model, target.item, target.content_sha256)
        return "cached" if encode_ms is None else "encoded"


def _check_lease(target: ClickTarget, who: str | None) -> None:
    holder, expires_at = target.leased_by, target.lease_expires_at
    if who is None or holder is None or expires_at is None or holder == who:
        return
    if expires_at >= time.time():
        raise LeaseHeldError(target.item.item_id, holder, expires_at, who)
