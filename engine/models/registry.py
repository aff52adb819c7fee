"""Model families: what each one reads, what it does, how it is built and versioned.

``FAMILIES`` is the one map from a family (``yolo``, ``sam``, ``hf-ner``,
``spacy``, ``classifier``) to the item kind it reads (``image`` / ``text``), its
role (``detector``, ``segmenter``: prompted by boxes or clicks, ``tagger``,
``classifier``: one whole-item label) and its builder; a ``ModelSpec`` from
configs/ picks one. Building resolves the weight file through
``engine.assets.resolve`` (verified, never downloaded) and derives the model
version from the weights' sha256 and the spec's config hash, so a changed file
or changed parameters is a new version and pre-label jobs redo exactly what
they must. ``resolved_version`` tells that version before building: from the
spec for ``yolo`` / ``sam`` / ``classifier``; for taggers also from what is on
disk (the checkpoint's weight hash, the installed spaCy pipeline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from engine import assets
from engine.config import ModelSpec
from engine.models.base import Model
from engine.models.versioning import spec_version

Builder = Callable[[ModelSpec, Path, str, str], Model]
Role = Literal["detector", "segmenter", "tagger", "classifier"]


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
            "tta",
        },
    )
    params.pop("batch_size", None)  # a job setting, read by the pre-label job
    arch_yaml = params.pop("arch_yaml", None)
    weights = None if arch_yaml else assets.resolve(models_dir, spec)
    return YoloDetector(
        weights_path=weights,
        arch_yaml=arch_yaml,
        name=spec.name,
        version=spec_version(spec),
        device=device,
        precision=precision,
        **params,
    )


def _build_sam(spec: ModelSpec, models_dir: Path, device: str, precision: str) -> Model:
    from engine.models.sam.segmenter import SamSegmenter

    return SamSegmenter.from_spec(spec, models_dir, device, precision)


def _build_classifier(spec: ModelSpec, models_dir: Path, device: str, precision: str) -> Model:
    from engine.models.classify.build import build_classifier

    return build_classifier(spec, models_dir, device, precision)


def _build_hf_ner(spec: ModelSpec, models_dir: Path, device: str, precision: str) -> Model:
    from engine.models.ner.hf import build_hf_ner

    return build_hf_ner(spec, models_dir, device, precision)


def _build_spacy(spec: ModelSpec, models_dir: Path, device: str, precision: str) -> Model:
    from engine.models.ner.spacy_ner import build_spacy

    return build_spacy(spec, models_dir, device, precision)


@dataclass(frozen=True)
class Family:
    kind: str  # the items it reads: image | text
    role: Role  # detector, tagger and classifier need no prompt; a segmenter is prompted
    build: Builder
    spec_versioned: bool  # its version follows from the spec alone (spec_version)


FAMILIES: dict[str, Family] = {
    "yolo": Family("image", "detector", _build_yolo, spec_versioned=True),
    "sam": Family("image", "segmenter", _build_sam, spec_versioned=True),
    "hf-ner": Family("text", "tagger", _build_hf_ner, spec_versioned=False),
    "spacy": Family("text", "tagger", _build_spacy, spec_versioned=False),
    "classifier": Family("image", "classifier", _build_classifier, spec_versioned=True),
}


def families(*, kind: str | None = None, roles: tuple[Role, ...] = ()) -> list[str]:
    """Family names, sorted, reading ``kind`` items and / or playing one of ``roles``."""
    return sorted(
        name
        for name, family in FAMILIES.items()
        if (kind is None or family.kind == kind) and (not roles or family.role in roles)
    )


def build_model(
    spec: ModelSpec, models_dir: Path, *, device: str = "auto", precision: str = "auto"
) -> Model:
    family = FAMILIES.get(spec.family)
    if family is None:
        raise ValueError(
            f"model {spec.name!r}: no builder for family {spec.family!r}; "
            f"known families: {sorted(FAMILIES)}"
        )
    return family.build(spec, models_dir, device, precision)


def resolved_version(spec: ModelSpec, models_dir: Path) -> str:
    """The version the built model will report (see the module doc); ``ValueError``
    when the tagger's checkpoint or pipeline is missing."""
    if spec.family == "hf-ner":
        return _hf_ner_version(spec, models_dir)
    if spec.family == "spacy":
        return _spacy_version(spec)
    return spec_version(spec)


def _hf_ner_version(spec: ModelSpec, models_dir: Path) -> str:
    """As ``engine.models.ner.hf.build_hf_ner``: checkpoint weight hash + behaviour params."""
    from engine.models import versioning
    from engine.models.ner.checkpoint import checkpoint_sha256, resolve_checkpoint

    path = resolve_checkpoint(spec, models_dir)
    behaviour = {k: v for k, v in spec.params.items() if k != "batch_size"}
    return f"{spec.name}-{versioning.model_version(checkpoint_sha256(path), behaviour)}"


def _spacy_version(spec: ModelSpec) -> str:
    """As ``engine.models.ner.spacy_ner.build_spacy``, from the package's meta.json (no load)."""
    from engine.models.ner.spacy_ner import _OPTIONS, DEFAULT_PACKAGE, pipeline_version

    unknown = sorted(set(spec.params) - _OPTIONS - {"package"})
    if unknown:
        raise ValueError(f"model {spec.name!r}: unknown param(s) {unknown}")
    package = str(spec.params.get("package", DEFAULT_PACKAGE))
    import spacy.util

    try:
        meta = spacy.util.get_model_meta(spacy.util.get_package_path(package))
    except (ImportError, OSError, ValueError) as exc:
        raise ValueError(
            f"model {spec.name!r}: spaCy pipeline package {package!r} is not installed "
            f"or has no meta.json ({exc})"
        ) from exc
    options = {k: v for k, v in spec.params.items() if k in _OPTIONS}
    pipeline = pipeline_version(SimpleNamespace(meta=meta), options)
    return f"{spec.name}-{pipeline}-{spec.config_hash()}"
