"""What a pre-label job runs and on which items: model plan, versions, items to do.

A job runs one model family on one kind of item, decided by the family:

- a detector (``yolo``) -> ``image`` items; optionally chained with a
  segmenter (``sam``) that turns the detector's boxes into masks;
- a tagger (``hf-ner`` / ``spacy``) -> ``text`` items;
- a classifier (``classifier``) -> ``image`` items, one whole-item class each
  (``engine.models.registry.FAMILIES`` says which family is which).

Versions are what resume compares: an item is skipped when it has a
prediction of the job's version. The version is known before any model is
built (``engine.models.registry.resolved_version``); the model actor refuses
to run if the model it built has another one (``engine.prelabel.stages.Predictor``).
A chained job's version is
``<detector>+<segmenter>-<hash of the mask settings>``: changing either model
or ``mask_min_box_score`` / ``mask_multimask`` redoes the items.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import ConfigError, ModelSpec
from engine.models.chain import chained_version
from engine.models.registry import FAMILIES, Role, families, resolved_version
from engine.models.versioning import spec_version
from engine.store import Store

PROMPT_FREE: tuple[Role, ...] = ("detector", "tagger", "classifier")  # no prompt needed


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
        return cls(spec=spec, kind=item_kind(spec), version=spec_version(spec))


def item_kind(spec: ModelSpec) -> str:
    """The item kind the family reads; ``ConfigError`` for families a job cannot run."""
    family = FAMILIES.get(spec.family)
    if family is None or family.role not in PROMPT_FREE:
        raise ConfigError(
            f"model {spec.name!r} is a {spec.family!r} model; a pre-label job runs a model "
            f"that needs no prompt: one of the families {families(roles=PROMPT_FREE)} "
            f"(a {families(roles=('segmenter',))} model runs chained: --segmenter)"
        )
    return family.kind


def check_segmenter(spec: ModelSpec, segmenter: ModelSpec) -> None:
    detector = FAMILIES.get(spec.family)
    if detector is None or detector.role != "detector":
        raise ConfigError(
            f"a segmenter turns detector boxes into masks; model {spec.name!r} is a "
            f"{spec.family!r} model, not an image detector"
        )
    family = FAMILIES.get(segmenter.family)
    if family is None or family.role != "segmenter":
        raise ConfigError(
            f"segmenter {segmenter.name!r} is a {segmenter.family!r} model; "
            f"expected one of the families {families(roles=('segmenter',))}"
        )


def resolve_version(spec: ModelSpec, models_dir: Path) -> str:
    """The version the built model will report (``registry.resolved_version``); a
    missing checkpoint or pipeline is a ``ConfigError``."""
    try:
        return resolved_version(spec, models_dir)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def check_stored_version(spec: ModelSpec, stored: str, source: str) -> None:
    """A spec-versioned model's stored version must still follow from its spec."""
    family = FAMILIES.get(spec.family)
    if family is not None and family.spec_versioned and spec_version(spec) != stored:
        raise ConfigError(
            f"{source}: model spec gives version {spec_version(spec)!r}, "
            f"but the job records {stored!r}"
        )


# -- items to do -----------------------------------------------------------------------


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
    done_by_job = store.count_predictions(version, job_id=job_id)  # in any run of the job
    budget = None if limit is None else max(limit - done_by_job, 0)
    todo: list[dict[str, Any]] = []
    skipped = 0
    for row in store.iter_item_rows(kind):
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
