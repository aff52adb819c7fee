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

Weights are never downloaded: a missing file is a ``ValueError``. Before
ultralytics is first imported, the constructor sets ``YOLO_OFFLINE=1`` and
``YOLO_AUTOINSTALL=false`` (``setdefault``); without them importing
ultralytics probes DNS. If ultralytics was imported earlier, they come late.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.imaging.decode import check_rgb_image, read_local_image
from engine.models.base import BaseModel, pick_device, pick_dtype
from engine.models.letterbox import (
    LetterboxFrame,
    letterbox_images,
    plan_letterbox,
    to_original_pixels,
)
from engine.models.versioning import model_version, sha256_file
from engine.types import Box, Item, Prediction, Suggestion

if TYPE_CHECKING:
    import torch

_MAX_NMS_CANDIDATES = 30_000  # as ultralytics' max_nms
_SUPPORTED_HEADS = frozenset({"Detect", "v10Detect"})
LETTERBOX_MODES = ("rect", "square")


def yolo_model_version(weights_sha256: str, config: Mapping[str, Any]) -> str:
    """``<weights sha256[:12]>-<sha256(sorted JSON of config)[:8]>``."""
    return model_version(weights_sha256, config)


@dataclass(frozen=True)
class YoloBatch:
    """One ``[b, 3, H, W]`` tensor (model dtype, device, 0..1) per canvas shape."""

    groups: tuple[tuple[tuple[int, ...], torch.Tensor], ...]  # (item positions, images)
    frames: tuple[LetterboxFrame, ...]


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
        (ultralytics' rule; ~2x faster there), NCHW elsewhere.
        """
        _check_params(conf_floor, iou_threshold, imgsz_px, max_det, letterbox_mode)
        self.letterbox_mode = letterbox_mode
        self.name = name
        self.conf_floor = float(conf_floor)
        self.iou_threshold = float(iou_threshold)
        self.imgsz_px = int(imgsz_px)
        self.max_det = int(max_det)
        self.agnostic_nms = bool(agnostic_nms)
        self.device = pick_device(device)
        self.dtype = _yolo_dtype(self.device, precision)

        net, weights_sha256 = _load_network(weights_path, arch_yaml, num_classes)
        self.num_classes = int(net.model[-1].nc)
        self.class_names = _class_names(net, class_names, self.num_classes)
        self.stride_px = int(net.stride.max())
        if self.imgsz_px % self.stride_px:
            raise ValueError(
                f"imgsz_px must be a multiple of the model stride {self.stride_px}, "
                f"got {self.imgsz_px}"
            )
        self.channels_last = _use_channels_last(self.device, channels_last)
        self._net = _prepare_for_inference(net, self.device, self.dtype, self.channels_last)
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
        }

    def preprocess(self, items: Sequence[Item], inputs: Sequence[Any] | None) -> YoloBatch:
        import torch

        given = [None] * len(items) if inputs is None else inputs
        images = [_image_of(item, image) for item, image in zip(items, given, strict=True)]
        square = self.letterbox_mode == "square"
        frames = tuple(
            plan_letterbox(im.shape[0], im.shape[1], self.imgsz_px, self.stride_px, square=square)
            for im in images
        )
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
        return YoloBatch(groups=tuple(groups), frames=frames)

    def forward(self, batch: YoloBatch) -> list[tuple[tuple[int, ...], torch.Tensor]]:
        """Per group: the raw ``[b, 4 + nc, anchors]`` output (xywh canvas px, sigmoid scores)."""
        outputs = []
        for positions, images in batch.groups:
            with self._forward_lock:
                output = self._net(images)
            outputs.append((positions, output[0] if isinstance(output, tuple | list) else output))
        return outputs

    def postprocess(
        self,
        items: Sequence[Item],
        raw: list[tuple[tuple[int, ...], torch.Tensor]],
        batch: YoloBatch,
    ) -> list[Prediction]:
        kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for positions, output in raw:
            for row, position in enumerate(positions):
                kept[position] = self._nms(output[row])
        return [
            self._prediction(item, *kept[position], batch.frames[position])
            for position, item in enumerate(items)
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
        self, item: Item, boxes_xyxy: np.ndarray, rows: np.ndarray, frame: LetterboxFrame
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
        )


# -- construction helpers ----------------------------------------------------------


def _check_params(
    conf_floor: float, iou_threshold: float, imgsz_px: int, max_det: int, letterbox_mode: str
) -> None:
    if letterbox_mode not in LETTERBOX_MODES:
        raise ValueError(f"letterbox_mode must be one of {LETTERBOX_MODES}, got {letterbox_mode!r}")
    if not 0.0 <= conf_floor < 1.0:
        raise ValueError(f"conf_floor must be in [0, 1), got {conf_floor}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if imgsz_px <= 0:
        raise ValueError(f"imgsz_px must be positive, got {imgsz_px}")
    if max_det < 1:
        raise ValueError(f"max_det must be >= 1, got {max_det}")


def _yolo_dtype(device: str, precision: str) -> torch.dtype:
    import torch

    if precision == "auto" and device.startswith("cuda"):
        return torch.float16
    return pick_dtype(device, precision)


def _load_network(
    weights_path: Path | str | None, arch_yaml: str | None, num_classes: int | None
) -> tuple[Any, str]:
    """The ultralytics ``DetectionModel`` (fp32, CPU) and the sha256 of its weights."""
    if (weights_path is None) == (arch_yaml is None):
        raise ValueError("give exactly one of weights_path (a .pt file) or arch_yaml")
    if num_classes is not None and weights_path is not None:
        raise ValueError("num_classes only applies to arch_yaml; weights fix the classes")
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no DNS probe, no update check
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # never pip-install at run time
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if path.suffix != ".pt" or not path.is_file():
            raise ValueError(f"YOLO weights must be an existing local .pt file, got {str(path)!r}")
        from ultralytics.nn.tasks import load_checkpoint

        net, _ = load_checkpoint(path)
        weights_sha256 = sha256_file(path)
    else:
        from ultralytics.nn.tasks import DetectionModel

        net = DetectionModel(arch_yaml, nc=num_classes, verbose=False)
        weights_sha256 = _state_dict_sha256(net)
    head = type(net.model[-1]).__name__
    if head not in _SUPPORTED_HEADS:
        raise ValueError(f"expected a YOLO detection model, got a {head} head")
    return net, weights_sha256


def _state_dict_sha256(net: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in net.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _class_names(
    net: torch.nn.Module, override: Sequence[str] | None, num_classes: int
) -> tuple[str, ...]:
    if override is not None:
        names = tuple(str(n) for n in override)
        if len(names) != num_classes or not all(names):
            raise ValueError(f"class_names needs {num_classes} non-empty names, got {len(names)}")
        return names
    model_names = getattr(net, "names", None) or {}
    if isinstance(model_names, Mapping):
        return tuple(str(model_names.get(i, i)) for i in range(num_classes))
    return tuple(str(n) for n in model_names)


def _use_channels_last(device: str, requested: bool | None) -> bool:
    import platform

    import torch

    if requested is not None:
        return requested
    mkldnn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    return bool(device == "cpu" and mkldnn and platform.machine() in {"x86_64", "AMD64"})


def _prepare_for_inference(
    net: Any, device: str, dtype: torch.dtype, channels_last: bool
) -> torch.nn.Module:
    import torch

    head = net.model[-1]
    if getattr(head, "one2one_cv2", None) is not None:
        # an NMS-free head returns top-k (box, score, class) only; one-to-many keeps all scores
        head.end2end = False
    net = net.fuse(verbose=False)
    net.eval().requires_grad_(False)
    net = net.to(device=device, dtype=dtype)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _image_of(item: Item, given: Any) -> np.ndarray:
    if given is not None:
        return check_rgb_image(given, source=item.item_id)
    if item.kind != "image" or not item.uri:
        raise ValueError(f"item {item.item_id!r} is not an image item with a uri")
    return read_local_image(item.uri)


@functools.cache
def nms_op() -> Callable[..., Any]:
    """torchvision's NMS kernel, without importing torchvision's Python package.

    ``import torchvision`` pulls in its model zoo and ``torch._dynamo``: 1.5-2.5 s on
    the first detection of a fresh process, most of a small job. The kernel itself
    lives in torchvision's compiled extension, registered as ``torchvision::nms``
    when the library loads; the package import is the fallback.
    """
    import importlib.util

    import torch

    if not hasattr(torch.ops.torchvision, "nms"):
        spec = importlib.util.find_spec("torchvision")
        folders = list(spec.submodule_search_locations or []) if spec else []
        libraries = sorted(p for folder in folders for p in Path(folder).glob("_C*.so"))
        if libraries:
            torch.ops.load_library(str(libraries[0]))
        else:  # pragma: no cover - a torchvision build without the shared library
            import torchvision  # noqa: F401  (registers the op)
    return torch.ops.torchvision.nms
