"""Label Studio's ML-backend protocol over the engine: ``/setup``, ``/predict``, ``/versions``.

- The labeling config decides the model: a config with a control on an
  ``<Image>`` is served by the detector (``default_detector``), or by the
  whole-image classifier (``default_classifier``) when its image controls are
  ``Choices`` only (no shape control); otherwise by the entity tagger
  (``default_tagger``). When a ``BrushLabels`` or
  ``PolygonLabels`` control labels the image too (and ``interactive_model``
  is a ``sam`` model), the detector is chained with the server's interactive
  segmenter (``ModelHolder.chain``): boxes and one mask per confident box,
  under the version ``labelengine prelabel --model <default_detector>
  --segmenter <interactive_model>`` records, so such a job's predictions are
  served as they are. ``/setup`` answers the model's version and every
  prediction for the project carries the same one.
- ``/predict`` answers exactly one prediction per task, in task order
  (``engine.labelstudio.predict``); with ``params.context.result`` (interactive
  mode) the segmenter answers one ``brushlabels`` region per task
  (``engine.labelstudio.interactive``).
- ``/setup`` is remembered per project (``"<id>.<timestamp>"``) in memory: its
  labeling config (used when ``/predict`` omits one), Label Studio's
  ``hostname`` and the owner's ``access_token``, which fetch ``/data/...``
  media when settings / ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` do not
  say otherwise.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import HTTPException

from engine.config import Settings, get_model_spec
from engine.labelstudio.config import (
    SHAPE_CONTROLS,
    LabelingConfig,
    ObjectTag,
    parse_labeling_config,
)
from engine.labelstudio.interactive import check_request, segment_tasks
from engine.labelstudio.media import LabelStudioAccess, MediaFetcher
from engine.labelstudio.models import CLASSIFIER, KINDS, ModelHolder
from engine.labelstudio.predict import load_tasks, predict_tasks
from engine.labelstudio.protocol import LsPredictIn, LsPredictionOut, LsSetupIn, LsTaskIn
from engine.labelstudio.tasks import TaskItem
from engine.models.base import Model
from engine.review.ranking import current_policy
from engine.segment.service import InteractiveSegmenter
from engine.store import Store

if TYPE_CHECKING:
    from engine.models.sam.segmenter import SamSegmenter

log = logging.getLogger(__name__)
MASK_RESULT_TYPES = ("brushlabels", "polygonlabels")


@dataclass(frozen=True)
class ProjectSetup:
    """What ``/setup`` told us about a project."""

    project: str
    model_version: str
    label_config: str
    hostname: str | None
    access_token: str | None


@functools.lru_cache(maxsize=64)
def parse_config(xml_text: str) -> LabelingConfig:
    """``parse_labeling_config``, cached (Label Studio sends the same XML every call)."""
    return parse_labeling_config(xml_text)


def config_kind(config: LabelingConfig) -> str:
    """``image`` when a control labels an ``<Image>``, else ``text``."""
    return "image" if any(c.target.kind == "image" for c in config.controls) else "text"


def config_model(config: LabelingConfig) -> str:
    """The ``ModelHolder`` slot serving ``config``: ``classifier`` when ``Choices`` label
    an ``<Image>`` and no shape control does, else the item kind (``config_kind``)."""
    kind = config_kind(config)
    image_controls = {c.tag for c in config.controls if c.target.kind == "image"}
    if kind == "image" and "Choices" in image_controls and not image_controls & {*SHAPE_CONTROLS}:
        return CLASSIFIER
    return kind


def wants_masks(config: LabelingConfig) -> bool:
    """True when a ``BrushLabels`` or ``PolygonLabels`` control labels an ``<Image>``."""
    return any(
        c.target.kind == "image" and c.result_type in MASK_RESULT_TYPES for c in config.controls
    )


class LabelStudioBackend:
    """The protocol's state (per-project setup) and its operations.

    ``segmenter`` (the app's interactive one) is what image projects with mask
    controls chain with the detector; without it they get the detector alone.
    """

    def __init__(
        self,
        settings: Settings,
        models: ModelHolder,
        fetcher: MediaFetcher | None = None,
        *,
        segmenter: InteractiveSegmenter | None = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.segmenter = segmenter
        self.fetcher = fetcher or MediaFetcher.from_settings(settings)
        self._projects: dict[str, ProjectSetup] = {}
        self._lock = threading.Lock()
        self._interactive_is_sam: bool | None = None

    def setup(self, body: LsSetupIn) -> str:
        """The model version for the project's config; remembers the project."""
        project = None if body.project is None else str(body.project)
        known = self.project(project)
        xml = body.label_schema or (known.label_config if known else None)
        if not xml:
            raise ValueError("/setup needs 'schema': the project's labeling config XML")
        version, _ = self.served(parse_config(xml))
        if project is not None:
            setup = ProjectSetup(project, version, xml, body.hostname, body.access_token)
            with self._lock:
                self._projects[project] = setup
        return version

    def project(self, project: str | int | None) -> ProjectSetup | None:
        if project is None:
            return None
        with self._lock:
            return self._projects.get(str(project))

    def versions(self) -> list[str]:
        """Versions of the models that can answer: detector, tagger, the classifier once
        loaded, then the detector -> segmenter chain once the segmenter is loaded (neither
        is loaded here)."""
        versions = []
        for kind in KINDS:
            try:
                versions.append(self.models.get(kind).version)
            except Exception as exc:
                log.warning("no %s model version: %s", kind, exc)
        if CLASSIFIER in self.models.loaded():
            versions.append(self.models.loaded()[CLASSIFIER])
        if self.segmenter is not None and self.segmenter.loaded and self._segmenter_is_sam():
            try:
                versions.append(self.models.chain(self.segmenter.model).version)
            except Exception as exc:
                log.warning("no chained image model version: %s", exc)
        return versions

    def mask_segmenter(self, config: LabelingConfig) -> SamSegmenter | None:
        """The segmenter to chain with the detector for ``config``; ``None`` when the
        config wants no masks or the server has no ``sam`` interactive model."""
        if self.segmenter is None or config_kind(config) != "image" or not wants_masks(config):
            return None
        if not self._segmenter_is_sam():
            return None
        self._load_segmenter(self.segmenter)
        return self.segmenter.model

    def served(self, config: LabelingConfig) -> tuple[str, SamSegmenter | None]:
        """The version ``config``'s predictions carry and the segmenter chained with
        the detector (``None``: the detector or tagger alone); 503 if one cannot load."""
        version = self.model(config_model(config)).version
        segmenter = self.mask_segmenter(config)
        if segmenter is None:
            return version, None
        try:
            return self.models.chain(segmenter).version, segmenter
        except Exception as exc:  # e.g. a bad jobs/prelabel.yaml: the server's, not the request's
            log.error("the detector -> segmenter chain cannot be built: %s", exc)
            raise HTTPException(
                503, f"the detector -> segmenter chain cannot be built ({exc}); see the server log"
            ) from exc

    def _segmenter_is_sam(self) -> bool:
        """Whether ``interactive_model`` names a ``sam`` model (read once)."""
        if self._interactive_is_sam is None:
            name = self.settings.interactive_model
            try:
                self._interactive_is_sam = get_model_spec(self.settings, name).family == "sam"
            except ValueError as exc:
                log.warning("no masks for image projects: %s", exc)
                self._interactive_is_sam = False
            if not self._interactive_is_sam:
                log.warning(
                    "interactive_model %r is not a sam model: image projects get boxes only", name
                )
        return self._interactive_is_sam

    def model(self, kind: str) -> Model:
        """The model for ``kind``, or a 503 naming why it cannot be loaded."""
        try:
            return self.models.get(kind)
        except Exception as exc:
            log.error("the %s model cannot be loaded: %s", kind, exc)
            raise HTTPException(
                503, f"the {kind} model cannot be loaded ({exc}); see the server log"
            ) from exc

    def predict(
        self, store: Store, segmenter: InteractiveSegmenter, body: LsPredictIn
    ) -> list[LsPredictionOut]:
        setup = self.project(body.project)
        xml = body.label_config or (setup.label_config if setup else None)
        if not xml:
            raise ValueError("/predict needs 'label_config' (or a /setup of its project first)")
        config = parse_config(xml)
        kind = config_kind(config)
        target = config.object_for(kind)
        if target is None:  # cannot happen: parse_labeling_config keeps used objects
            raise ValueError(f"labeling config has no <{kind.title()}> object to read")
        project = None if body.project is None else str(body.project)
        access = LabelStudioAccess(setup.hostname, setup.access_token) if setup else None
        context = body.params.context if body.params and body.params.context else None
        if context is not None and context.result:  # interactive mode
            if kind != "image":
                raise ValueError("interactive segmentation needs an <Image> in the config")
            check_request(config, context.result)
            self._load_segmenter(segmenter)
            loaded = self._load(store, body.tasks, target, access, project)
            return segment_tasks(
                store, segmenter, config, context.result, body.tasks, loaded, project=project
            )
        version, chain_with = self.served(config)
        loaded = self._load(store, body.tasks, target, access, project)
        return predict_tasks(
            store,
            self.models,
            kind,
            version,
            config,
            body.tasks,
            loaded,
            segmenter=chain_with,
            model=config_model(config),
            policy=current_policy(store, self.settings.rank_policy),
        )

    def _load(
        self,
        store: Store,
        tasks: Sequence[LsTaskIn],
        target: ObjectTag,
        access: LabelStudioAccess | None,
        project: str | None,
    ) -> list[TaskItem | None]:
        return load_tasks(
            store,
            self.fetcher,
            tasks,
            target,
            access=access,
            project=project,
            max_pixels=self.settings.max_image_pixels,
        )

    @staticmethod
    def _load_segmenter(segmenter: InteractiveSegmenter) -> None:
        try:
            segmenter.model  # noqa: B018 - builds it on first use
        except Exception as exc:
            log.error("the segmenter cannot be loaded: %s", exc)
            raise HTTPException(
                503, f"the segmenter cannot be loaded ({exc}); see the server log"
            ) from exc
