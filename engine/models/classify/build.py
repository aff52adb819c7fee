"""The ``classifier`` family from a model spec: params checked, weights resolved, built.

Params (``configs/models/<name>.yaml``):

- ``arch``: ``efficientnet_lite0`` (default), ``timm:<name>`` or ``torchvision:<name>``;
- ``class_names``: one per output (default: ImageNet-1k's, for a 1000-class head);
- ``image_size_px``, ``crop_pct``: input size and centre crop (default: the arch's);
- ``batch_size``: a job setting (read by the pre-label job, not the model).

The weight file is the spec's asset (a state dict), resolved by
``engine.assets.resolve``: verified, never downloaded. The version is the
spec's (``spec_version``: asset sha256 + config hash).
"""

from __future__ import annotations

from pathlib import Path

from engine import assets
from engine.config import ModelSpec
from engine.models.classify.classifier import ImageClassifier
from engine.models.classify.networks import check_arch
from engine.models.versioning import spec_version

PARAMS = frozenset({"arch", "class_names", "image_size_px", "crop_pct", "batch_size"})


def build_classifier(
    spec: ModelSpec, models_dir: Path, device: str = "auto", precision: str = "auto"
) -> ImageClassifier:
    unknown = sorted(set(spec.params) - PARAMS)
    if unknown:
        raise ValueError(
            f"model {spec.name!r}: unknown param(s) {unknown}; allowed: {sorted(PARAMS)}"
        )
    params = dict(spec.params)
    params.pop("batch_size", None)
    arch = str(params.pop("arch", "efficientnet_lite0"))
    check_arch(arch)
    class_names = params.pop("class_names", None)
    if class_names is not None and (
        not isinstance(class_names, list) or not all(isinstance(n, str) for n in class_names)
    ):
        raise ValueError(f"model {spec.name!r}: class_names must be a list of strings")
    weights = assets.resolve(models_dir, spec)
    return ImageClassifier(
        weights,
        arch,
        name=spec.name,
        version=spec_version(spec),
        class_names=class_names,
        image_size_px=params.pop("image_size_px", None),
        crop_pct=params.pop("crop_pct", None),
        device=device,
        precision=precision,
    )
