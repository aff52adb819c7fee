"""The models behind Label Studio's ``/predict``: a detector for images, a tagger for texts,
a classifier for images labeled as a whole (``<Choices>`` and no shape control).

``ModelHolder`` builds each from its settings name (``default_detector``,
``default_tagger``, ``default_classifier``) once, under a lock, on first use or
in ``load_all`` (the app's startup: detector and tagger; the classifier loads
on first use); tests pass ready models instead. Models are held per *slot*:
the item kinds ``image`` and ``text``, and ``classifier`` (image items).
``predict`` serialises calls per model (spaCy pipelines and YOLO's anchor
cache are not safe to share between threads), so the HTTP threadpool may call
it freely.

For image projects that want masks, ``chain(segmenter)`` is the detector
chained with the server's interactive segmenter (``engine.models.chain``),
with the version and mask settings a pre-label job records for
``--model <default_detector> --segmenter <interactive_model>`` (the job
config read as ``labelengine prelabel`` reads it, once per chain), so
predictions such a job stored are served, not computed again. The chain keeps
the segmenter's embedding cache: an image it encoded answers the editor's
clicks with the decoder alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from engine.config import Settings, get_model_spec
from engine.models.base import Model
from engine.types import Item, Prediction

if TYPE_CHECKING:
    from engine.models.chain import ChainedModel
    from engine.models.registry import Role
    from engine.models.sam.segmenter import SamSegmenter

log = logging.getLogger(__name__)

KINDS = ("image", "text")
CLASSIFIER = "classifier"
SLOTS = (*KINDS, CLASSIFIER)  # what ``get`` / ``predict`` take
_SETTING = {"image": "default_detector", "text": "default_tagger", CLASSIFIER: "default_classifier"}
_SLOT_KIND = {"image": "image", "text": "text", CLASSIFIER: "image"}
_SLOT_ROLES: dict[str, tuple[Role, ...]] = {
    "image": ("detector",),
    "text": ("tagger",),
    CLASSIFIER: ("classifier",),
}


class ModelHolder:
    """One model per slot (item kind, or ``classifier``), built once; see the module doc."""

    def __init__(
        self,
        settings: Settings,
        *,
        detector: Model | None = None,
        tagger: Model | None = None,
        build: Callable[[str], Model] | None = None,
        classifier: Model | None = None,
    ) -> None:
        self._settings = settings
        self._build = build
        self._names = {slot: getattr(settings, _SETTING[slot]) for slot in SLOTS}
        given = {"image": detector, "text": tagger, CLASSIFIER: classifier}
        self._models: dict[str, Model] = {k: m for k, m in given.items() if m is not None}
        self._build_locks = {slot: threading.Lock() for slot in SLOTS}
        self._run_locks = {slot: threading.Lock() for slot in SLOTS}
        self._chain: ChainedModel | None = None
        self._chain_lock = threading.Lock()

    def _build_kind(self, kind: str) -> Model:
        name = self._names[kind]
        if self._build is not None:
            return self._build(name)
        from engine.models.registry import build_model, families

        spec = get_model_spec(self._settings, name)
        allowed = families(kind=_SLOT_KIND[kind], roles=_SLOT_ROLES[kind])
        if spec.family not in allowed:
            raise ValueError(
                f"{_SETTING[kind]} {name!r} is a {spec.family} model; it needs one of "
                f"the families {', '.join(allowed)}"
            )
        return build_model(spec, self._settings.resolved_models_dir)

    def get(self, kind: str) -> Model:
        """The model for ``kind`` (``image`` / ``text`` / ``classifier``), built on first use."""
        if kind not in SLOTS:
            raise ValueError(f"no model for {kind!r}; one of: {', '.join(SLOTS)}")
        model = self._models.get(kind)
        if model is not None:
            return model
        with self._build_locks[kind]:
            model = self._models.get(kind)
            if model is None:
                log.info("loading the %s model %r", kind, self._names[kind])
                model = self._build_kind(kind)
                self._models[kind] = model
        return model

    def chain(self, segmenter: SamSegmenter) -> ChainedModel:
        """The image detector chained with ``segmenter`` (see the module doc).

        Built once per (detector, segmenter) pair; the segmenter keeps its cache.
        """
        detector = self.get("image")
        with self._chain_lock:
            chain = self._chain
            if chain is None or chain.detector is not detector or chain.segmenter is not segmenter:
                chain = self._build_chain(detector, segmenter)
                self._chain = chain
        return chain

    def _build_chain(self, detector: Model, segmenter: SamSegmenter) -> ChainedModel:
        from engine.models.chain import ChainedModel, chained_version
        from engine.prelabel.config import config_for_job

        job = config_for_job(self._settings, None)  # as `labelengine prelabel` reads it
        version = chained_version(
            detector.version, segmenter.version, job.mask_min_box_score, job.mask_multimask
        )
        log.info("image projects with masks: %s", version)
        return ChainedModel(
            detector,
            segmenter,
            version=version,
            min_box_score=job.mask_min_box_score,
            multimask=job.mask_multimask,
            keep_cache=True,
        )

    def predict(
        self,
        kind: str,
        items: Sequence[Item],
        inputs: Sequence[Any] | None = None,
        *,
        segmenter: SamSegmenter | None = None,
    ) -> list[Prediction]:
        """The ``kind`` model's predictions; with ``segmenter`` (images) the chain's.

        A chained item's ``metadata["key"]`` keys its embedding (see
        ``ChainedModel.predict``).
        """
        if segmenter is not None and kind != "image":
            raise ValueError(f"a segmenter chains with the image detector, not the {kind} model")
        model: Model = self.get(kind) if segmenter is None else self.chain(segmenter)
        with self._run_locks[kind]:  # the chain runs the detector too
            return model.predict(items, inputs)

    def loaded(self) -> dict[str, str]:
        """``kind -> model version`` of the models built so far (loads nothing)."""
        return {kind: model.version for kind, model in self._models.items()}

    def load_all(self) -> dict[str, str]:
        """Build every model now; a failure is logged (and retried on first use), not raised.

        Returns ``kind -> error message`` for the models that failed.
        """
        errors: dict[str, str] = {}
        for kind in KINDS:
            try:
                self.get(kind)
            except Exception as exc:  # startup goes on; /predict reports the error
                errors[kind] = f"{type(exc).__name__}: {exc}"
                log.error("cannot load the %s model %r: %s", kind, self._names[kind], exc)
        return errors
