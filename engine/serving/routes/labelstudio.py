"""Label Studio's ML-backend protocol at the root: ``/setup``, ``/predict``, ``/versions``.

The engine's base URL is what a user pastes into Label Studio (Settings ->
Model). ``GET /health`` (its own router) answers without credentials; these
routes take HTTP Basic auth as Label Studio sends it (user
``basic_auth_user``, password the API token) or the bearer token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from engine.labelstudio.protocol import (
    LsPredictIn,
    LsPredictOut,
    LsSetupIn,
    LsSetupOut,
    LsVersionsOut,
)
from engine.serving.deps import SegmenterDep, StoreDep
from engine.serving.ls_backend import LabelStudioBackend
from engine.serving.schemas.common import ErrorOut

router = APIRouter(tags=["labelstudio"])

_ERRORS: dict[int | str, dict[str, object]] = {
    422: {"model": ErrorOut, "description": "a labeling config or request the engine cannot serve"},
    503: {"model": ErrorOut, "description": "the model cannot be loaded"},
}


def _backend(request: Request) -> LabelStudioBackend:
    backend: LabelStudioBackend = request.app.state.ls_backend
    return backend


@router.post(
    "/setup",
    response_model=LsSetupOut,
    summary="Label Studio: connect a project",
    description="Label Studio sends ``project`` (``<id>.<created timestamp>``), ``schema`` "
    "(the labeling config), ``hostname`` and the owner's ``access_token`` before every "
    "predict. The answer is the version every prediction for this project carries: the "
    "detector's for a config with a control on an ``<Image>`` (with a ``BrushLabels`` or "
    "``PolygonLabels`` control there too: the detector -> segmenter chain's, as "
    "``labelengine prelabel --segmenter`` records it), else the entity tagger's. "
    "The hostname and token are kept in memory to fetch ``/data/...`` media when "
    "LABELENGINE_LABEL_STUDIO_URL / _API_KEY (or LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY) "
    "are unset.",
    responses=_ERRORS,
)
def setup(body: LsSetupIn, request: Request) -> LsSetupOut:
    return LsSetupOut(model_version=_backend(request).setup(body))


@router.post(
    "/predict",
    response_model=LsPredictOut,
    summary="Label Studio: predictions for tasks",
    description="``tasks`` (``[{id, data}]``), ``label_config``, ``project`` and ``params`` as "
    "Label Studio sends them. The answer has **exactly one** ``{result, score, "
    "model_version}`` per task, in task order; ``result`` is ``[]`` when nothing was found. "
    "A task that fails (missing data key, unreachable media...) is logged and answered "
    '``result: []``, ``score: 0`` and ``model_version: "<version>+failed"`` so Label Studio '
    "asks again next time; the batch never fails for one task. Regions: "
    "``rectanglelabels`` (percent of ``original_width`` / ``original_height``), "
    "``brushlabels`` (Label Studio RLE) and ``polygonlabels`` (one mask per confident box), "
    "``labels`` (``start``, ``end``, ``text``), ids ``s<suggestion_id>``. Model classes map "
    "to the project's labels by value, alias or ``predicted_values``; unmapped classes are "
    "skipped. **score** is the item's uncertainty score (higher = label first): sort the "
    "Data Manager by prediction score, descending, to label the most useful tasks first. "
    "Interactive mode (``params.context.result`` with ``keypointlabels`` and / or "
    "``rectanglelabels``): one ``brushlabels`` region (Label Studio RLE) from the "
    "segmenter, using the cached image embedding.",
    responses=_ERRORS,
)
def predict(
    body: LsPredictIn, request: Request, store: StoreDep, segmenter: SegmenterDep
) -> LsPredictOut:
    return LsPredictOut(results=_backend(request).predict(store, segmenter, body))


@router.get(
    "/versions",
    response_model=LsVersionsOut,
    summary="Label Studio: model versions",
    description="The versions of the detector and the entity tagger, and of the "
    "detector -> segmenter chain once the segmenter is loaded.",
)
def versions(request: Request) -> LsVersionsOut:
    return LsVersionsOut(versions=_backend(request).versions())
