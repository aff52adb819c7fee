"""Building a YOLO network for inference: parameter checks, loading, fusing, NMS.

Used by ``engine.models.yolo.YoloDetector``; see its module doc for the contract.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.models.base import pick_dtype
from engine.models.versioning import sha256_file

if TYPE_CHECKING:
    import torch

_SUPPORTED_HEADS = frozenset({"Detect", "v10Detect"})
LETTERBOX_MODES = ("rect", "square")


def check_params(
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


def yolo_dtype(device: str, precision: str) -> torch.dtype:
    import torch

    if precision == "auto" and device.startswith("cuda"):
        return torch.float16
    return pick_dtype(device, precision)


def load_network(
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


def class_names_of(
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


def use_channels_last(device: str, requested: bool | None) -> bool:
    import platform

    import torch

    if requested is not None:
        return requested
    mkldnn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    return bool(device == "cpu" and mkldnn and platform.machine() in {"x86_64", "AMD64"})


def prepare_for_inference(
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
