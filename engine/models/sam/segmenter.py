"""Promptable segmenter: embed an image once, then decode many prompts cheaply.

``SamSegmenter`` wraps any ``segment_anything`` ``Sam`` variant
(``engine.models.sam.builders``). ``embed`` runs the image encoder once per
image (through an ``EmbeddingCache``); ``segment`` / ``segment_boxes`` run only
the prompt encoder and mask decoder (``FastMaskDecoder``). ``predict`` is the
batch form used by pre-label jobs (``engine.models.sam.batch``).

Preprocessing mirrors ``SamPredictor``: resize the longest side to the
encoder's ``img_size`` (``ResizeLongestSide``), normalise with the variant's
pixel mean/std (LiteMedSAM: ``/255``), pad bottom-right to a square.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engine.models.base import BaseModel, pick_device, pick_dtype
from engine.models.sam.batch import ItemPrompts, check_image, parse_inputs, to_prediction
from engine.models.sam.builders import DEFAULT_VARIANT, build_sam, get_variant
from engine.models.sam.embedding_cache import (
    CacheKey,
    Embedding,
    EmbeddingCache,
    content_hash,
    image_key,
)
from engine.models.sam.prompts import ResolvedPrompt, check_boxes, resolve_prompt
from engine.models.sam.results import MaskResult, PromptInfo, build_results, chunk_size
from engine.types import Item, Prediction

if TYPE_CHECKING:
    import torch

    from engine.config import ModelSpec
    from engine.models.sam.decoder import ImageContext

_CONTEXTS_KEPT = 4
_SPEC_PARAMS = {
    "variant",
    "batch_size",
    "cache_max_bytes",
    "cache_store_dtype",
    "cache_dir",
    "compile_encoder",
    "tiny",
    "seed",
}


class SamSegmenter(BaseModel):
    """Click/box-to-mask with a cached image embedding; see the module doc."""

    def __init__(
        self,
        variant: str = DEFAULT_VARIANT,
        checkpoint: Path | str | None = None,
        *,
        tiny: bool = False,
        seed: int = 0,
        device: str = "auto",
        precision: str = "auto",
        compile_encoder: bool = False,
        cache: EmbeddingCache | None = None,
        cache_max_bytes: int = 512 * 1024**2,
        batch_size: int | None = None,
        name: str = "sam",
        version: str | None = None,
        weights_sha256: str | None = None,
    ) -> None:
        import torch
        from segment_anything.utils.transforms import ResizeLongestSide

        from engine.models.sam.decoder import FastMaskDecoder

        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise ValueError(f"SAM checkpoint not found: {checkpoint}")
        self.variant = get_variant(variant)
        self.accepts_point_prompts = self.variant.accepts_point_prompts
        self.name = name
        self.version = version or _version(variant, checkpoint, tiny, seed, weights_sha256)
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, precision)
        # CPU: batching only adds memory traffic (LiteMedSAM's first stage runs at 256 px).
        self.batch_size = batch_size or (8 if self.device.startswith("cuda") else 1)
        self.sam = build_sam(variant, checkpoint, tiny=tiny, seed=seed).to(self.device)
        self.img_size = int(self.sam.image_encoder.img_size)
        self.mask_threshold = float(self.sam.mask_threshold)
        self.decoder = FastMaskDecoder(self.sam)
        self.low_res_size = self.decoder.low_res_size
        self._transform = ResizeLongestSide(self.img_size)
        encoder = self.sam.image_encoder
        self._encoder = torch.compile(encoder) if compile_encoder else encoder
        self.cache = (
            cache if cache is not None else EmbeddingCache(cache_max_bytes, device=self.device)
        )
        self._lock = threading.Lock()
        self._contexts: OrderedDict[CacheKey, tuple[torch.Tensor, ImageContext]] = OrderedDict()
        self.encoder_calls = 0
        self.images_encoded = 0

    @classmethod
    def from_spec(
        cls, spec: ModelSpec, models_dir: Path, device: str = "auto", precision: str = "auto"
    ) -> SamSegmenter:
        """Build from a ``configs/models`` spec (family ``sam``); weights never downloaded.

        ``spec.params``: ``variant``, ``batch_size``, ``compile_encoder``, ``tiny``,
        ``seed``, and the cache's ``cache_max_bytes``, ``cache_store_dtype``,
        ``cache_dir`` (disk tier). No ``asset`` -> random weights.
        """
        from engine import assets
        from engine.models.versioning import spec_version

        unknown = sorted(set(spec.params) - _SPEC_PARAMS)
        if unknown:
            raise ValueError(f"model {spec.name!r}: unknown param(s) {unknown}")
        params = dict(spec.params)
        cache = EmbeddingCache(
            int(params.pop("cache_max_bytes", 512 * 1024**2)),
            store_dtype=str(params.pop("cache_store_dtype", "native")),
            disk_dir=params.pop("cache_dir", None),
            device=pick_device(device),
        )
        return cls(
            variant=str(params.pop("variant", DEFAULT_VARIANT)),
            checkpoint=assets.resolve(models_dir, spec) if spec.asset is not None else None,
            device=device,
            precision=precision,
            cache=cache,
            name=spec.name,
            version=spec_version(spec),
            **params,
        )

    # -- embedding --------------------------------------------------------------------

    def embed(self, image_id_or_hash: str | None, image: npt.NDArray[np.uint8]) -> Embedding:
        """The image's embedding, from the cache or by one encoder run.

        ``image_id_or_hash`` keys the cache (made file-safe by ``image_key``);
        None -> ``content_hash(image)``.
        """
        image = check_image(image)
        key = (
            image_key(image_id_or_hash) if image_id_or_hash else content_hash(image),
            self.version,
        )
        return self.cache.get_or_compute(key, lambda: self._encode([image], [key[0]])[0])

    def embed_many(
        self, images: Sequence[npt.NDArray[np.uint8]], keys: Sequence[str] | None = None
    ) -> list[Embedding]:
        """Embeddings of many images: cached ones reused, the rest encoded in batches."""
        images = [check_image(image) for image in images]
        if keys is not None and len(keys) != len(images):
            raise ValueError(f"got {len(keys)} keys for {len(images)} images")
        names = (
            [image_key(k) for k in keys]
            if keys is not None
            else [content_hash(image) for image in images]
        )
        found: dict[str, Embedding] = {}
        todo: dict[str, npt.NDArray[np.uint8]] = {}
        for name, image in zip(names, images, strict=True):
            hit = found.get(name) or self.cache.get((name, self.version))
            if hit is not None:
                found[name] = hit
            else:
                todo.setdefault(name, image)
        pending = list(todo.items())
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            encoded = self._encode([image for _, image in chunk], [name for name, _ in chunk])
            found.update((e.image_key, self.cache.put(e)) for e in encoded)
        return [found[name] for name in names]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.split(":")[0], dtype=self.dtype)

    def _encode(self, images: list[npt.NDArray[np.uint8]], keys: list[str]) -> list[Embedding]:
        import torch

        inputs, sizes = [], []
        with torch.inference_mode():
            for image in images:
                resized = self._transform.apply_image(image)
                sizes.append((int(resized.shape[0]), int(resized.shape[1])))
                pixels = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)
                inputs.append(self.sam.preprocess(pixels[None].float()))
            with self._autocast():
                features = self._encoder(torch.cat(inputs))
        with self._lock:
            self.encoder_calls += 1
            self.images_encoded += len(images)
        return [
            Embedding(
                features=features[i : i + 1].clone(),
                original_size_hw=(int(image.shape[0]), int(image.shape[1])),
                input_size_hw=sizes[i],
                image_key=key,
                model_version=self.version,
            )
            for i, (image, key) in enumerate(zip(images, keys, strict=True))
        ]

    # -- decoding ---------------------------------------------------------------------

    def segment(
        self,
        embedding: Embedding,
        points_xy: npt.ArrayLike | None = None,
        point_labels: npt.ArrayLike | None = None,
        box_xyxy: npt.ArrayLike | None = None,
        mask_input: Any | None = None,
        multimask: bool = False,
        candidate_boxes_xyxy: npt.ArrayLike | None = None,
    ) -> list[MaskResult]:
        """Masks for one prompt: 1 result, or 3 (best first) when ``multimask``.

        ``points_xy`` ``[n, 2]`` pixels with ``point_labels`` ``[n]`` (1 positive,
        0 negative); ``box_xyxy`` ``[4]`` pixels; ``mask_input`` a previous
        result's ``low_res_logits``. A box-trained variant turns clicks into a box
        (smallest ``candidate_boxes_xyxy`` containing them, else a default square);
        ``MaskResult.prompt`` says which prompt was used.
        """
        resolved = resolve_prompt(
            points_xy,
            point_labels,
            box_xyxy,
            embedding.original_size_hw,
            accepts_point_prompts=self.accepts_point_prompts,
            candidate_boxes_xyxy=candidate_boxes_xyxy,
        )
        return self._run(embedding, [resolved], mask_input, multimask)[0]

    def segment_boxes(
        self, embedding: Embedding, boxes_xyxy: npt.ArrayLike, *, multimask: bool = False
    ) -> list[MaskResult]:
        """One mask per box (``[n, 4]`` pixels), all boxes in one batched decoder call.

        With ``multimask`` each box keeps its best of three masks (highest
        predicted IoU) and reports the three masks' disagreement.
        """
        boxes = check_boxes(boxes_xyxy, embedding.original_size_hw)
        if len(boxes) == 0:
            return []
        prompts = [ResolvedPrompt(None, None, box, "box") for box in boxes]
        return [results[0] for results in self._run(embedding, prompts, None, multimask)]

    def _run(
        self,
        embedding: Embedding,
        prompts: list[ResolvedPrompt],
        mask_input: Any | None,
        multimask: bool,
    ) -> list[list[MaskResult]]:
        import torch

        from engine.models.sam.decoder import PAD_LOGIT, valid_grid
        from engine.models.sam.results import upscale_logits

        self._check_embedding(embedding)
        indices = [1, 2, 3] if multimask else [0]
        with torch.inference_mode():
            (oh, ow), (ih, iw) = embedding.original_size_hw, embedding.input_size_hw
            sparse, dense = self.decoder.encode_prompts(prompts, (iw / ow, ih / oh), mask_input)
            grid = valid_grid(embedding.input_size_hw, self.img_size, self.decoder.grid_hw)
            context = self._context(embedding)
            low, iou = self.decoder.decode(context, sparse, dense, indices, grid)
            size = self.low_res_size
            low_full = low.new_full((*low.shape[:2], size, size), PAD_LOGIT)
            low_full[..., : low.shape[2], : low.shape[3]] = low
            infos = [_prompt_info(p) for p in prompts]
            step = chunk_size(len(prompts), len(indices), embedding.original_size_hw)
            out: list[list[MaskResult]] = []
            for start in range(0, len(prompts), step):
                part = slice(start, start + step)
                logits = upscale_logits(
                    low[part],
                    self.img_size,
                    size,
                    embedding.input_size_hw,
                    embedding.original_size_hw,
                )
                out += build_results(
                    logits, low_full[part], iou[part], indices, self.mask_threshold, infos[part]
                )
        return out

    def _check_embedding(self, embedding: Embedding) -> None:
        if embedding.model_version != self.version:
            raise ValueError(
                f"embedding was made by model version {embedding.model_version!r}, "
                f"this segmenter is {self.version!r}"
            )

    def _context(self, embedding: Embedding) -> ImageContext:
        import torch

        with self._lock:
            kept = self._contexts.get(embedding.key)
            if kept is not None and kept[0] is embedding.features:
                self._contexts.move_to_end(embedding.key)
                return kept[1]
        features = embedding.features.to(device=self.device, dtype=torch.float32)
        context = self.decoder.prepare(features)
        with self._lock:
            self._contexts[embedding.key] = (embedding.features, context)
            while len(self._contexts) > _CONTEXTS_KEPT:
                self._contexts.popitem(last=False)
        return context

    # -- batch pre-labeling (BaseModel) -----------------------------------------------

    def predict_with_boxes(
        self,
        items: Sequence[Item],
        images: Sequence[npt.NDArray[np.uint8]],
        boxes_per_item: Sequence[npt.ArrayLike],
        labels_per_item: Sequence[Sequence[str] | None] | None = None,
    ) -> list[Prediction]:
        """``predict`` with images, boxes and labels as parallel sequences."""
        labels = labels_per_item or [None] * len(items)
        if not len(items) == len(images) == len(boxes_per_item) == len(labels):
            raise ValueError("items, images, boxes_per_item and labels_per_item differ in length")
        return self.predict(items, list(zip(images, boxes_per_item, labels, strict=True)))

    def preprocess(self, items: Sequence[Item], inputs: Sequence[Any] | None) -> list[ItemPrompts]:
        return parse_inputs(items, inputs)

    def forward(self, batch: list[ItemPrompts]) -> list[tuple[Embedding, list[MaskResult]]]:
        embeddings = self.embed_many([p.image for p in batch])
        return [
            (emb, self.segment_boxes(emb, p.boxes_xyxy))
            for emb, p in zip(embeddings, batch, strict=True)
        ]

    def postprocess(
        self,
        items: Sequence[Item],
        raw: list[tuple[Embedding, list[MaskResult]]],
        batch: list[ItemPrompts],
    ) -> list[Prediction]:
        return [
            to_prediction(prompts, emb, results, self.name, self.version)
            for prompts, (emb, results) in zip(batch, raw, strict=True)
        ]


def _prompt_info(prompt: ResolvedPrompt) -> PromptInfo:
    box = prompt.box_xyxy
    box_xyxy = (
        (float(box[0]), float(box[1]), float(box[2]), float(box[3])) if box is not None else None
    )
    return PromptInfo(prompt.source, box_xyxy)


def _version(
    variant: str, checkpoint: Path | str | None, tiny: bool, seed: int, sha256: str | None
) -> str:
    if checkpoint is None:
        return f"random-{seed}-{variant}" + ("-tiny" if tiny else "")
    if sha256 is None:
        from engine.assets import sha256_file

        sha256 = sha256_file(Path(checkpoint))
    return f"{sha256[:12]}-{variant}"
