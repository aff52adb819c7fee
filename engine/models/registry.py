"""Builder functions keyed by model family; a ``ModelSpec`` from configs/ picks one.

Building resolves the weight file through ``engine.assets.resolve`` (verified,
never downloaded) and derives the model version from the weights' sha256 and
the spec's config hash, so a changed file or changed parameters is a new
version and pre-label jobs redo exactly what they must.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import assets
from engine.config import ModelSpec
from engine.models.base import Model

Builder = Callable[[ModelSpec, Path, str, str], Model]


def model_version(spec: ModelSpec) -> str:
    """``<name>-<weights sha256[:12]>-<config hash>``; stable across machines."""
    weights = spec.asset.sha256[:12] if spec.asset is not None else "noweights"
    return f"{spec.name}-{weights}-{spec.config_hash()}"


def _params(spec: ModelSpec, allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(spec.params) - allowed)
    if unknown:
        raise ValueError(
            f"model {spec.name!r}: unknown param(s) {unknown}; allowed: {sorted(allowed)}"
        )
    return dict(spec.params)


def _build_yolo(spec: ModelSpec, models_dir: Path, device: str, precision: str) -> Model:
    from engine.models.yolo import YoloDetector

    params = _params(
        spec,
        {
            "conf_floor",
            "iou_threshold",
            "imgsz_px",
            "max_det",
            "batch_size",
            "arch_yaml",
            "letterbox_mode",
        },
    )
    params.pop("batch_size", None)  # a job setting, read by the pre-label job
    arch_yaml = params.pop("arch_yaml", None)
    weights = None if arch_yaml else assets.resolve(models_dir, spec)
    return YoloDetector(
        weights_path=weights,
        arch_yaml=arch_yaml,
        name=spec.name,
        version=model_version(spec),
        device=device,
        precision=precision,
        **params,
    )


def _build_sam(spec: ModelSpec, models_dir: Path, device: str, precision: str) -> Model:
    from engine.models.sam.segmenter import SamSegmenter

    return SamSegmenter.from_spec(spec, models_dir, device, precision)


def _build_hf_ner(spec: ModelSpec, models_dir: Path, device: str, precision: str) -> Model:
    from engine.models.ner.hf import build_hf_ner

    return build_hf_ner(spec, models_dir, device, precision)


def _build_spacy(spec: ModelSpec, models_dir: Path, device: str, precision: str) -> Model:
    from engine.models.ner.spacy_ner import build_spacy

    return build_spacy(spec, models_dir, device, precision)


BUILDERS: dict[str, Builder] = {
    "yolo": _build_yolo,
    "sam": _build_sam,
    "hf-ner": _build_hf_ner,
    "spacy": _build_spacy,
}


def build_model(
    spec: ModelSpec, models_dir: Path, *, device: str = "auto", precision: str = "auto"
) -> Model:
    builder = BUILDERS.get(spec.family)
    if builder is None:
        raise ValueError(
            f"model {spec.name!r}: no builder for family {spec.family!r}; "
            f"known families: {sorted(BUILDERS)}"
        )
    return builder(spec, models_dir, device, precision)
