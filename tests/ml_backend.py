"""Label Studio 1.23 talking to the engine as its ML backend, for the tests.

``setup`` / ``predict`` post ``/setup`` and ``/predict`` with the bodies Label
Studio 1.23 sends (Basic auth, as it does); ``keypoint`` is a smart-keypoint click
as the editor sends it; ``webhook_event`` is a webhook body for one annotation.
The models served: a tiny random YOLO11 that finds cats, trees and cars, the
bundled spaCy tagger, tiny random LiteMedSAMs; for configs with mask controls
(detector -> segmenter chain) a settings folder naming them by model spec.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tiny_models
import yaml
from PIL import Image

from engine.config import REPO_CONFIG_DIR, ModelSpec, Settings, load_settings, model_specs
from engine.models.versioning import spec_version
from engine.store import Store
from engine.types import Item, Prediction, Suggestion

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from engine.labelstudio.models import ModelHolder
    from engine.models.base import Model
    from engine.models.sam.segmenter import SamSegmenter
    from engine.models.yolo import YoloDetector

BASIC = {"Authorization": "Basic " + base64.b64encode(b"labelengine:test-token").decode()}
PROJECT = "7.1718000000"
CLASSES = tiny_models.DETECTOR_CLASSES
IMAGE_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <RectangleLabels name="box" toName="image">
    <Label value="Animal" predicted_values="cat,dog"/>
    <Label value="Vehicle" predicted_values="car"/>
  </RectangleLabels>
  <BrushLabels name="brush" toName="image">
    <Label value="Thing"/>
    <Label value="Animal"/>
  </BrushLabels>
  <KeyPointLabels name="kp" toName="image" smart="true">
    <Label value="Animal"/>
    <Label value="Plant"/>
  </KeyPointLabels>
</View>"""
# No mask control: served by the detector alone (BrushLabels / PolygonLabels chain the
# segmenter: tests/labelstudio/test_ls_masks*.py).
BOX_CONFIG = (
    IMAGE_CONFIG.split("  <BrushLabels")[0]
    + "  <KeyPointLabels"
    + IMAGE_CONFIG.split("  <KeyPointLabels")[1]
)
TEXT_CONFIG = """<View>
  <Labels name="ner" toName="text">
    <Label value="Person" predicted_values="PERSON"/>
    <Label value="Place" predicted_values="GPE,LOC"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""


def png(height: int, width: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def clear_label_studio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Label Studio to talk back to: the engine must not find one in the environment."""
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)


# -- /setup and /predict ----------------------------------------------------------------


def setup(client: TestClient, config: str, hostname: str = "http://localhost:8080") -> str:
    """``/setup`` for ``PROJECT`` with ``config``; the model version it answers."""
    body = {
        "project": PROJECT,
        "schema": config,
        "hostname": hostname,
        "access_token": "owner-token",
        "extra_params": None,
    }
    response = client.post("/setup", json=body, headers=BASIC)
    assert response.status_code == 200, response.text
    return str(response.json()["model_version"])


def predict(
    client: TestClient, tasks: list[dict[str, Any]], config: str, context: Any = None
) -> list[dict[str, Any]]:
    """``/predict`` of ``tasks``; one result per task, in order."""
    body = {
        "tasks": tasks,
        "label_config": config,
        "project": PROJECT,
        "params": {"login": None, "password": None, "context": context},
    }
    response = client.post("/predict", json=body, headers=BASIC)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    assert len(results) == len(tasks)
    return results


def image_task(task_id: int, ref: str) -> dict[str, Any]:
    return {"id": task_id, "data": {"image": ref}, "meta": {}, "annotations": [], "predictions": []}


def keypoint(
    x: float,
    y: float,
    label: str = "Animal",
    positive: bool = True,
    size_wh: tuple[int, int] = (64, 48),
) -> dict[str, Any]:
    """A smart keypoint (percent coordinates) as the editor sends it in ``params.context``."""
    return {
        "original_width": size_wh[0],
        "original_height": size_wh[1],
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": [label]},
        "is_positive": positive,
        "id": "kp1",
        "from_name": "kp",
        "to_name": "image",
        "type": "keypointlabels",
        "origin": "manual",
    }


def by_type(result: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in result if r["type"] == kind]


# -- the models served ------------------------------------------------------------------


def tiny_detector() -> YoloDetector:
    """The tiny random YOLO11 finding cats, trees and cars, named ``tiny-yolo``."""
    return tiny_models.cat_tree_car_detector("tiny-yolo")


@functools.cache
def spacy_tagger() -> Model:
    from engine.models.registry import build_model

    return build_model(model_specs(REPO_CONFIG_DIR)["spacy-sm"], Path("/nonexistent"))


@functools.cache
def shared_sam() -> SamSegmenter:
    """One tiny random LiteMedSAM for the process (its encoder counts accumulate)."""
    return tiny_models.tiny_sam(name="sam-tiny")


def model_holder(settings: Settings) -> ModelHolder:
    """The detector and tagger of ``settings``' defaults: the tiny YOLO and spaCy."""
    from engine.labelstudio.models import ModelHolder

    return ModelHolder(settings, detector=tiny_detector(), build=lambda name: spacy_tagger())


@contextmanager
def backend(settings: Settings, store: Store, models: ModelHolder) -> Iterator[TestClient]:
    """The app serving ``models``, with ``shared_sam`` as the interactive segmenter."""
    from fastapi.testclient import TestClient

    from engine.segment.service import InteractiveSegmenter
    from engine.serving.app import create_app

    segmenter = InteractiveSegmenter(settings, build=shared_sam)
    with TestClient(create_app(settings, store, segmenter, models)) as client:
        yield client


# -- mask controls: the detector chained with the segmenter ------------------------------

DET_SPEC = tiny_models.tiny_yolo_spec("tinydet")
SAM_SPEC = tiny_models.tiny_sam_spec("tinysam")
RECT = """  <RectangleLabels name="box" toName="image">
    <Label value="Animal" predicted_values="cat,dog"/>
    <Label value="Vehicle" predicted_values="car"/>
  </RectangleLabels>"""
BRUSH = """  <BrushLabels name="brush" toName="image">
    <Label value="Animal" predicted_values="cat,dog"/>
  </BrushLabels>"""  # no Vehicle: a car's mask must not come back as a second rectangle
POLYGON = """  <PolygonLabels name="outline" toName="image">
    <Label value="Animal" predicted_values="cat,dog"/>
  </PolygonLabels>"""
KEYPOINT = """  <KeyPointLabels name="kp" toName="image" smart="true">
    <Label value="Animal"/>
  </KeyPointLabels>"""


def labeling_config(*controls: str) -> str:
    return "\n".join(['<View>\n  <Image name="image" value="$image"/>', *controls, "</View>"])


def chain_detector() -> YoloDetector:
    """The tiny cat/tree/car YOLO11 under the name and version of ``DET_SPEC``."""
    return tiny_models.cat_tree_car_detector(
        "tinydet", spec_version(ModelSpec.model_validate(DET_SPEC))
    )


def chain_sam() -> SamSegmenter:
    """A fresh tiny LiteMedSAM of ``SAM_SPEC`` whose masks pass the display threshold."""
    return tiny_models.tiny_sam(
        name="tinysam", version=spec_version(ModelSpec.model_validate(SAM_SPEC)), iou_bias=0.9
    )


def chain_settings(tmp_path: Path) -> Settings:
    """Settings whose detector and interactive model are ``DET_SPEC`` and ``SAM_SPEC``."""
    config_dir = tmp_path / "configs"
    (config_dir / "models").mkdir(parents=True)
    (config_dir / "jobs").mkdir()
    shutil.copy(REPO_CONFIG_DIR / "jobs" / "prelabel.yaml", config_dir / "jobs" / "prelabel.yaml")
    for spec in (DET_SPEC, SAM_SPEC):
        (config_dir / "models" / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    return load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path],
        config_dir=config_dir,
        api_token="test-token",
        default_detector="tinydet",
        interactive_model="tinysam",
    )


def client_for(
    settings: Settings, store: Store, sam: SamSegmenter, detector: Any = None
) -> TestClient:
    from fastapi.testclient import TestClient

    from engine.labelstudio.models import ModelHolder
    from engine.segment.service import InteractiveSegmenter
    from engine.serving.app import create_app

    models = ModelHolder(settings, detector=detector or chain_detector())
    segmenter = InteractiveSegmenter(settings, build=lambda: sam)
    return TestClient(create_app(settings, store, segmenter, models))


def image_tasks(tmp_path: Path, sizes_hw: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    tasks = []
    for n, (height, width) in enumerate(sizes_hw):
        path = tmp_path / f"t{n}.png"
        path.write_bytes(png(height, width, seed=100 + n))
        tasks.append({"id": n + 1, "data": {"image": str(path)}})
    return tasks


def item_id_of(task: dict[str, Any]) -> str:
    return hashlib.sha256(Path(task["data"]["image"]).read_bytes()).hexdigest()[:24]


def suggestion_of(store: Store, item_id: str, version: str, region_id: str) -> Any:
    """The stored suggestion (of ``version``) behind a result id ``s<id>[.n]``."""
    records = store.suggestions_for(item_id, model_version=version)
    return {f"s{r.suggestion_id}": r for r in records}[region_id.split(".")[0]]


def parent_of(store: Store, item_id: str, version: str, mask: Any) -> Any:
    """The stored box a chained mask was made from."""
    records = store.suggestions_for(item_id, model_version=version)
    return next(r for r in records if r.position == mask.suggestion.parent_index)


def expected_job_version(store: Store, settings: Settings) -> str:
    """What ``labelengine prelabel --model <detector> --segmenter <segmenter>`` records."""
    from engine.prelabel.job import create_prelabel_job

    job = create_prelabel_job(
        store,
        settings,
        model_name=settings.default_detector,
        segmenter_name=settings.interactive_model,
    )
    return str(job.model_version)


# -- webhooks ---------------------------------------------------------------------------

SIZE_PX = (640, 480)  # width, height of the webhook tests' images
WEBHOOK_IMAGE_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="Cat" predicted_values="cat"/>
    <Label value="Dog" predicted_values="dog"/>
  </RectangleLabels>
</View>"""
WEBHOOK_MASK_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image"><Label value="Cat"/></BrushLabels>
  <PolygonLabels name="poly" toName="image"><Label value="Cat"/></PolygonLabels>
</View>"""
WEBHOOK_TEXT_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Labels name="ner" toName="text"><Label value="PER"/><Label value="ORG"/></Labels>
</View>"""


def suggestion(label: str, score: float, region: Any) -> Suggestion:
    return Suggestion(label, score, region, "test-model", "test-v1")


def seed(store: Store, item: Item, suggestions: list[Suggestion]) -> list[int]:
    """Store ``item`` with one ``test-v1`` prediction of ``suggestions``; their ids."""
    store.add_items([item], [None])
    probs = np.zeros((len(suggestions), 0), dtype=np.float32)
    prediction = Prediction(item.item_id, "test-model", "test-v1", tuple(suggestions), probs)
    store.save_predictions([prediction], [0.5])
    return [r.suggestion_id for r in store.suggestions_for(item.item_id)]


def shown_results(store: Store, item: Item, config: str) -> list[dict[str, Any]]:
    """What /predict sent Label Studio for the item (shown suggestions, ids s<id>)."""
    from engine.labelstudio.results import parse_labeling_config, to_ls_prediction

    records = [r for r in store.suggestions_for(item.item_id) if r.suggestion.score >= 0.25]
    prediction = to_ls_prediction(
        [r.suggestion for r in records],
        parse_labeling_config(config),
        model_version="test-v1",
        image_size_px=SIZE_PX if item.kind == "image" else None,
        suggestion_ids=[r.suggestion_id for r in records],
        text=item.text,
    )
    return prediction["result"]


def webhook_event(
    action: str,
    annotation_id: int,
    results: list[dict[str, Any]],
    *,
    config: str = WEBHOOK_IMAGE_CONFIG,
    data: dict[str, Any] | None = None,
    updated_at: str = "2025-03-01T10:00:00.000000Z",
    cancelled: bool = False,
) -> dict[str, Any]:
    """A webhook body as Label Studio 1.23 sends it for one annotation."""
    return {
        "action": action,
        "annotation": {
            "id": annotation_id,
            "result": results,
            "was_cancelled": cancelled,
            "ground_truth": False,
            "created_at": "2025-03-01T09:59:00.000000Z",
            "updated_at": updated_at,
            "lead_time": 12.5,
            "prediction": {},
            "result_count": len(results),
            "task": 11,
            "completed_by": 1,
            "parent_prediction": 3,
            "parent_annotation": None,
            "last_action": None,
            "project": 1,
            "updated_by": 1,
        },
        "task": {"id": 11, "data": data or {"image": "/data/upload/1/a.png"}, "project": 1},
        "project": {"id": 1, "title": "cats", "label_config": config, "model_version": "test-v1"},
    }


def result_by_id(results: list[dict[str, Any]], suggestion_id: int) -> dict[str, Any]:
    return next(r for r in results if r["id"] == f"s{suggestion_id}")


def counts(body: dict[str, Any]) -> tuple[int, ...]:
    """A webhook answer's counts: accepted, edited, rejected, skipped, unlinked, unseen, invalid."""
    keys = ("accepted", "edited", "rejected", "skipped", "unlinked", "unseen", "invalid")
    return tuple(body[k] for k in keys)


def is_labeled(store: Store, item_id: str) -> bool:
    from sqlalchemy import select

    from engine.store import schema

    with store.engine.connect() as conn:
        query = select(schema.items.c.labeled).where(schema.items.c.item_id == item_id)
        return bool(conn.execute(query).scalar_one())
