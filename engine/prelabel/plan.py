"""What a pre-label job runs and on which items: model plan, versions, items to do.

A job runs one model family on one kind of item, decided by the family:

- ``yolo`` (detector) -> ``image`` items; optionally chained with a ``sam``
  segmenter that turns the detector's boxes into masks;
- ``hf-ner`` / ``spacy`` (taggers) -> ``text`` items.

Versions are what resume compares: an item is skipped when it has a
prediction of the job's version. A detector or segmenter version comes from
its spec (``engine.models.registry.model_version``). A tagger's version also
depends on what is on disk (the checkpoint's weight hash, the installed spaCy
pipeline), so it is resolved here the way the builders compute it, and the
model actor refuses to run if the model it built has another version
(``engine.prelabel.stages.Predictor``). A chained job's version is
``<detector>+<segmenter>-<hash of the mask settings>``: changing either model
or ``mask_min_box_score`` / ``mask_multimask`` redoes the items.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from engine.config import ConfigError, ModelSpec
from engine.models.registry import model_version
from engine.store import Store
from engine.store import schema as t

FAMILY_KINDS = {"yolo": "image", "hf-ner": "text", "spacy": "text"}
SEGMENTER_FAMILIES = frozenset({"sam"})
SPEC_VERSIONED = frozenset({"yolo", "sam"})  # version = registry.model_version(spec)
MAX_VERSION_CHARS = 128  # predictions.model_version column
_PAGE = 1000


@dataclass(frozen=True)
class ModelPlan:
    """The model(s) of a job, the item kind they read and the versions they write.

    ``version`` is the model's own; ``job_version`` what the job's predictions
    carry (the chained version when there is a segmenter).
    """

    spec: ModelSpec
    kind: str
    version: str
    segmenter: ModelSpec | None = None
    segmenter_version: str | None = None
    mask_min_box_score: float = 0.25
    mask_multimask: bool | None = None

    @property
    def job_version(self) -> str:
        if self.segmenter is None or self.segmenter_version is None:
            return self.version
        return chained_version(
            self.version, self.segmenter_version, self.mask_min_box_score, self.mask_multimask
        )

    @property
    def job_model_name(self) -> str:
        return (
            self.spec.name if self.segmenter is None else f"{self.spec.name}+{self.segmenter.name}"
        )

    @classmethod
    def for_spec(cls, spec: ModelSpec) -> ModelPlan:
        """A plan for a spec-versioned model alone (no disk look-ups)."""
        return cls(spec=spec, kind=item_kind(spec), version=model_version(spec))


def item_kind(spec: ModelSpec) -> str:
    """The item kind the family reads; ``ConfigError`` for families a job cannot run."""
    kind = FAMILY_KINDS.get(spec.family)
    if kind is None:
        raise ConfigError(
            f"model {spec.name!r} is a {spec.family!r} model; a pre-label job runs a model "
            f"that needs no prompt: one of the families {sorted(FAMILY_KINDS)} "
            f"(a {sorted(SEGMENTER_FAMILIES)} model runs chained: --segmenter)"
        )
    return kind


def check_segmenter(spec: ModelSpec, segmenter: ModelSpec) -> None:
    if FAMILY_KINDS.get(spec.family) != "image":
        raise ConfigError(
            f"a segmenter turns detector boxes into masks; model {spec.name!r} is a "
            f"{spec.family!r} model, not an image detector"
        )
    if segmenter.family not in SEGMENTER_FAMILIES:
        raise ConfigError(
            f"segmenter {segmenter.name!r} is a {segmenter.family!r} model; "
            f"expected one of the families {sorted(SEGMENTER_FAMILIES)}"
        )


def chained_version(
    detector: str, segmenter: str, min_box_score: float, multimask: bool | None
) -> str:
    """``<detector>+<segmenter>-<8 hex of the mask settings>``."""
    from engine.models.versioning import config_hash

    settings = config_hash({"mask_min_box_score": min_box_score, "mask_multimask": multimask})
    version = f"{detector}+{segmenter}-{settings}"
    if len(version) > MAX_VERSION_CHARS:
        raise ConfigError(
            f"chained model version {version!r} is longer than {MAX_VERSION_CHARS} characters; "
            "use shorter model names"
        )
    return version


def resolve_version(spec: ModelSpec, models_dir: Path) -> str:
    """The version the built model will report (see the module doc)."""
    try:
        if spec.family == "hf-ner":
            return _hf_ner_version(spec, models_dir)
        if spec.family == "spacy":
            return _spacy_version(spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return model_version(spec)


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


def check_stored_version(spec: ModelSpec, stored: str, source: str) -> None:
    """A spec-versioned model's stored version must still follow from its spec."""
    if spec.family in SPEC_VERSIONED and model_version(spec) != stored:
        raise ConfigError(
            f"{source}: model spec gives version {model_version(spec)!r}, "
            f"but the job records {stored!r}"
        )


# -- items to do -----------------------------------------------------------------------


def predicted_by_job(store: Store, job_id: str, version: str) -> int:
    """How many predictions of ``version`` the job has written (in any run)."""
    query = (
        select(func.count())
        .select_from(t.predictions)
        .where(t.predictions.c.job_id == job_id, t.predictions.c.model_version == version)
    )
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def plan_items(
    store: Store, job_id: str, version: str, limit: int | None, kind: str = "image"
) -> tuple[list[dict[str, Any]], int]:
    """``(rows to do, items skipped)`` for a run of the job, in item id order.

    Image rows: ``item_id``, ``uri``, ``key`` (content sha256, else the id: the
    segmenter's embedding key, as the server uses). Text rows: ``item_id``,
    ``uri`` ("" when none) and ``text`` as UTF-8 bytes (decoded again, strictly,
    by the text decode stage).
    """
    predicted = store.predicted_item_ids(version)
    budget = None if limit is None else max(limit - predicted_by_job(store, job_id, version), 0)
    todo: list[dict[str, Any]] = []
    skipped = 0
    for row in _item_rows(store, kind):
        if row.item_id in predicted:
            skipped += 1
        elif budget is not None and len(todo) >= budget:
            break
        elif kind == "text":
            text = row.text or ""
            todo.append(
                {
                    "item_id": row.item_id,
                    "uri": row.uri or "",
                    "text": text.encode("utf-8", "surrogatepass"),
                }
            )
        elif row.uri is not None:
            todo.append(
                {"item_id": row.item_id, "uri": row.uri, "key": row.content_sha256 or row.item_id}
            )
    return todo, skipped


def _item_rows(store: Store, kind: str) -> Iterator[Any]:
    """``item_id, uri, text, content_sha256`` of every item of ``kind``, paged by id."""
    items = t.items.c
    last = ""
    while True:
        query = (
            select(items.item_id, items.uri, items.text, items.content_sha256)
            .where(items.kind == kind, items.item_id > last)
            .order_by(items.item_id)
            .limit(_PAGE)
        )
        with store.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].item_id
