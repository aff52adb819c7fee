"""Ultralytics YOLO detector that keeps every kept box's full class-score vector.

For a batch of ``HxWx3`` uint8 RGB arrays of any sizes:

1. preprocess: letterbox (aspect kept, longest side ``imgsz_px``, grey 114,
   centred) into an ``imgsz_px`` square canvas (``letterbox_mode="square"``,
   ultralytics' batch predict) or one rounded up to the stride (``"rect"``,
   its single-image predict); images with the same canvas shape are stacked
   and moved to the device as uint8.
2. forward: one pass per canvas shape (so one per batch when square) ->
   ``[b, 4 + nc, anchors]`` (xywh in canvas px, one sigmoid score per class).
   Batching never changes a result.
3. postprocess: boxes whose best class score is above ``conf_floor`` go
   through class-aware NMS (``agnostic_nms=True``: class-agnostic), then back
   to original pixels, clipped; boxes clipped to zero area are dropped.

``Prediction.probs`` row i is the class-score vector of suggestion i, shape
``[n_boxes, n_classes]`` float32. These are **independent per-class
sigmoids**: a row does not sum to 1 and is not a softmax distribution.
``Suggestion.score`` is the row's maximum, ``label`` its class; suggestions
are sorted by score, descending.

``Prediction.embedding`` is the backbone's ``SPPF`` map of the same forward,
averaged over the image's cells (not the padding): 256 floats for yolo11n
(``engine.models.yolo_features``). With ``tta`` (a list of augmentations,
default none) extra batched passes add ``signals`` and per-box attributes
``tta_*`` and change nothing else (``engine.models.yolo_tta``).

Weights are never downloaded: a missing file is a ``ValueError``. Before
ultralytics is first imported, the constructor sets ``YOLO_OFFLINE=1`` and
``YOLO_AUTOINSTALL=false`` (``setdefault``); without them importing
ultralytics probes DNS. If ultralytics was imported earlier, they come late.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.imaging.decode import image_input
from engine.models.base import BaseModel, pick_device
from engine.models.letterbox import (
    LetterboxFrame,
    letterbox_images,
    plan_letterbox,
    to_original_pixels,
)
from engine.models.versioning import model_version
from engine.models.yolo_build import (
    LETTERBOX_MODES,
    check_params,
    class_names_of,
    load_network,
    nms_op,
    prepare_for_inference,
    use_channels_last,
    yolo_dtype,
)
from engine.models.yolo_features import FeatureTap, pooled_embeddings
from engine.models.yolo_tta import augmented_inputs, parse_tta, to_base_pixels, with_tta
from engine.types import Box, FloatArray, Item, Prediction, Suggestion

if TYPE_CHECKING:
    import torch

__all__ = ["LETTERBOX_MODES", "YoloBatch", "YoloDetector", "nms_op", "yolo_model_version"]

_MAX_NMS_CANDIDATES = 30_000  # as ultralytics' max_nms
Groups = tuple[tuple[tuple[int, ...], "torch.Tensor"], ...]  # (positions, [b, 3, H, W])
Outputs = list[tuple[tuple[int, ...], "torch.Tensor"]]  # (positions, [b, 4 + nc, anchors])


def yolo_model_version(weights_sha256: str, config: Mapping[str, Any]) -> str:
    """``<weights sha256[:12]>-<sha256(sorted JSON of config)[:8]>``."""
    return model_version(weights_sha256, config)


@dataclass(frozen=True)
class YoloBatch:
    """One ``[b, 3, H, W]`` tensor (model dtype, device, 0..1) per canvas shape."""

    groups: Groups  # (item positions, images)
    frames: tuple[LetterboxFrame, ...]
    tta_groups: Groups = ()  # positions into tta_frames: augmentation-major, then item
    tta_frames: tuple[LetterboxFrame, ...] = ()


@dataclass(frozen=True)
class YoloOutputs:
    """The raw head outputs of the base and augmented passes, and the base embeddings."""

    base: Outputs
    embeddings: dict[int, FloatArray]
    tta: Outputs


class YoloDetector(BaseModel):
    """Batched YOLO detection; see the module docstring for the contract."""

    def __init__(
        self,
        weights_path: Path | str | None = None,
        arch_yaml: str | None = None,
        *,
        name: str = "yolo",
        version: str | None = None,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        conf_floor: float = 0.01,
        iou_threshold: float = 0.7,
        imgsz_px: int = 640,
        max_det: int = 300,
        agnostic_nms: bool = False,
        letterbox_mode: str = "square",
        channels_last: bool | None = None,
        tta: Sequence[str] | None = None,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        """Load ``weights_path`` (an ultralytics ``.pt``) or build ``arch_yaml``.

        ``arch_yaml`` (e.g. ``"yolo11n.yaml"``, shipped in ultralytics) builds
        the real architecture with random weights and ``num_classes`` classes
        (default 80), for tests. ``version`` defaults to ``yolo_model_version``
        of the weights' sha256 and ``config()``. ``precision="auto"``: fp16 on
        CUDA (YOLO's fused layers are not reliably bf16-safe), fp32 on CPU.
        ``letterbox_mode="square"``: one fixed-shape forward per batch;
        ``"rect"``: least padding, one forward per distinct canvas shape
        (fastest for same-size backlogs, slow for many different sizes).
        ``channels_last=None``: NHWC weights and inputs on x86 CPUs with oneDNN
        (ultralytics' rule; ~2x faster there), NCHW elsewhere. ``tta``: e.g.
        ``["hflip", "scale:0.83"]`` (``engine.models.yolo_tta``).
        """
        check_params(conf_floor, iou_threshold, imgsz_px, max_det, letterbox_mode)
        self.tta = parse_tta(tta)
        self.letterbox_mode = letterbox_mode
        self.name = name
        self.conf_floor = float(conf_floor)
        self.iou_threshold = float(iou_threshold)
        self.imgsz_px = int(imgsz_px)
        self.max_det = int(max_det)
        self.agnostic_nms = bool(agnostic_nms)
        self.device = pick_device(device)
        self.dtype = yolo_dtype(self.device, precision)

        net, weights_sha256 = load_network(weights_path, arch_yaml, num_classes)
        self.num_classes = int(net.model[-1].nc)
        self.class_names = class_names_of(net, class_names, self.num_classes)
        self.stride_px = int(net.stride.max())
        if self.imgsz_px % self.stride_px:
            raise ValueError(
                f"imgsz_px must be a multiple of the model stride {self.stride_px}, "
                f"got {self.imgsz_px}"
            )
        self.channels_last = use_channels_last(self.device, channels_last)
        self._net = prepare_for_inference(net, self.device, self.dtype, self.channels_last)
        self._tap = FeatureTap(self._net)  # the embedding: one layer's output, pooled
        self._forward_lock = threading.Lock()  # the Detect head caches anchors per input shape
        self.version = version or yolo_model_version(weights_sha256, self.config())

    def config(self) -> dict[str, Any]:
        """The parameters that change outputs (they feed the default version)."""
        return {
            "family": "yolo",
            "imgsz_px": self.imgsz_px,
            "conf_floor": self.conf_floor,
            "iou_threshold": self.iou_threshold,
            "max_det": self.max_det,
            "agnostic_nms": self.agnostic_nms,
            "letterbox_mode": self.letterbox_mode,
            "class_names": list(self.class_names),
            **({"tta": [a.name for a in self.tta]} if self.tta else {}),
        }

    def preprocess(self, items: Sequence[Item], inputs: Sequence[Any] | None) -> YoloBatch:
        given = [None] * len(items) if inputs is None else inputs
        images = [image_input(item, image) for item, image in zip(items, given, strict=True)]
        square = self.letterbox_mode == "square"
        frames = tuple(
            plan_letterbox(im.shape[0], im.shape[1], self.imgsz_px, self.stride_px, square=square)
            for im in images
        )
        if not self.tta:
            return YoloBatch(groups=self._groups(images, frames), frames=frames)
        tta_images, tta_frames = augmented_inputs(
            self.tta, images, self.imgsz_px, self.stride_px, square=square
        )
        return YoloBatch(
            groups=self._groups(images, frames),
            frames=frames,
            tta_groups=self._groups(tta_images, tta_frames),
            tta_frames=tuple(tta_frames),
        )

    def _groups(self, images: Sequence[np.ndarray], frames: Sequence[LetterboxFrame]) -> Groups:
        """Images with one canvas shape letterboxed into one tensor (model dtype, 0..1)."""
        import torch

        by_shape: dict[tuple[int, int], list[int]] = {}
        for position, frame in enumerate(frames):
            by_shape.setdefault(frame.canvas_shape, []).append(position)
        groups = []
        for positions in by_shape.values():
            canvas = letterbox_images(
                [images[i] for i in positions], [frames[i] for i in positions]
            )
            tensor = torch.from_numpy(canvas).to(self.device).permute(0, 3, 1, 2)  # NHWC strides
            if not self.channels_last:
                tensor = tensor.contiguous()
            tensor = tensor.to(self.dtype).div_(255.0)
            groups.append((tuple(positions), tensor))
        return tuple(groups)

    def forward(self, batch: YoloBatch) -> YoloOutputs:
        """Per group: the raw ``[b, 4 + nc, anchors]`` output (xywh canvas px, sigmoid scores);
        per base image its pooled embedding; then the augmented groups (no embeddings)."""
        base: Outputs = []
        embeddings: dict[int, FloatArray] = {}
        for positions, images in batch.groups:
            with self._forward_lock:
                output = self._net(images)
                features = self._tap.take()
            base.append((positions, output[0] if isinstance(output, tuple | list) else output))
            pooled = pooled_embeddings(features, [batch.frames[i] for i in positions])
            embeddings.update(zip(positions, pooled, strict=True))
        tta: Outputs = []
        for positions, images in batch.tta_groups:
            with self._forward_lock:
                output = self._net(images)
                self._tap.take()
            tta.append((positions, output[0] if isinstance(output, tuple | list) else output))
        return YoloOutputs(base=base, embeddings=embeddings, tta=tta)

    def postprocess(
        self, items: Sequence[Item], raw: YoloOutputs, batch: YoloBatch
    ) -> list[Prediction]:
        kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for positions, output in raw.base:
            for row, position in enumerate(positions):
                kept[position] = self._nms(output[row])
        predictions = [
            self._prediction(item, *kept[k], batch.frames[k], raw.embeddings[k])
            for k, item in enumerate(items)
        ]
        if not self.tta:
            return predictions
        passes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for positions, output in raw.tta:
            for row, flat in enumerate(positions):
                boxes, rows = self._nms(output[row])
                hflip = self.tta[flat // len(items)].hflip
                passes[flat] = to_base_pixels(boxes, rows, batch.tta_frames[flat], hflip)
        n = len(items)
        return [
            with_tta(p, [passes[t * n + k] for t in range(len(self.tta))])
            for k, p in enumerate(predictions)
        ]

    def _nms(self, pred: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``pred`` [4 + nc, anchors] -> (boxes [n, 4] canvas xyxy, scores [n, nc]), by score."""
        import torch

        class_scores = pred[4 : 4 + self.num_classes]
        best, best_class = class_scores.max(dim=0)
        candidates = (best > self.conf_floor).nonzero().squeeze(1)
        if candidates.numel() > _MAX_NMS_CANDIDATES:
            candidates = candidates[best[candidates].topk(_MAX_NMS_CANDIDATES).indices]
        xywh = pred[:4, candidates].T.float()
        boxes = torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), dim=1)
        scores = best[candidates].float()
        if self.agnostic_nms or not boxes.numel():
            offset_boxes = boxes
        else:  # shift each class into its own coordinate range: one NMS call, per-class result
            span = boxes.abs().max() + 1.0
            offset_boxes = boxes + best_class[candidates, None].to(boxes.dtype) * span
        keep = nms_op()(offset_boxes, scores, self.iou_threshold)[: self.max_det]
        rows = class_scores[:, candidates[keep]].T.float()
        return boxes[keep].cpu().numpy(), rows.cpu().numpy()

    def _prediction(
        self,
        item: Item,
        boxes_xyxy: np.ndarray,
        rows: np.ndarray,
        frame: LetterboxFrame,
        embedding: FloatArray | None = None,
    ) -> Prediction:
        original = to_original_pixels(boxes_xyxy, frame)
        visible = (original[:, 2] > original[:, 0]) & (original[:, 3] > original[:, 1])
        original, rows = original[visible], np.clip(rows[visible], 0.0, 1.0)
        class_index = rows.argmax(axis=1) if len(rows) else np.zeros(0, dtype=np.int64)
        score = rows.max(axis=1) if len(rows) else np.zeros(0, dtype=np.float32)
        order = np.argsort(-score, kind="stable")
        suggestions = tuple(
            Suggestion(
                label=self.class_names[int(class_index[i])],
                score=float(score[i]),
                region=Box(*original[i].tolist()),
                model_name=self.name,
                model_version=self.version,
                attributes={"class_index": int(class_index[i])},
            )
            for i in order
        )
        return Prediction(
            item_id=item.item_id,
            model_name=self.name,
            model_version=self.version,
            suggestions=suggestions,
            probs=rows[order].astype(np.float32),
            class_names=self.class_names,
            embedding=embedding,
        )
