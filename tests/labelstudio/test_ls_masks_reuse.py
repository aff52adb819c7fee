"""Label Studio ``/predict`` with mask controls, later calls: a rejected box takes its mask
out, a click reuses the embedding the chain computed, and a chained prediction a
pre-label job stored is served without running a model (tests/ml_backend.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ml_backend import (
    BRUSH,
    KEYPOINT,
    RECT,
    by_type,
    chain_detector,
    chain_sam,
    chain_settings,
    client_for,
    image_tasks,
    item_id_of,
    keypoint,
    labeling_config,
    parent_of,
    predict,
    setup,
    suggestion_of,
)
from PIL import Image

from engine.config import Settings
from engine.models.chain import ChainedModel
from engine.prelabel.job import create_prelabel_job
from engine.review.scoring import image_score
from engine.store import Store
from engine.types import Item, Mask


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The detector and interactive model are tiny ones named by specs (tests/ml_backend.py)."""
    return chain_settings(tmp_path)


class UnusableDetector:
    """A detector that must not run (the stored predictions must answer)."""

    name = "tinydet"

    def __init__(self, version: str) -> None:
        self.version = version

    def predict(self, items: Sequence[Item], inputs: Sequence[Any] | None = None) -> list[Any]:
        raise AssertionError("the detector ran, but the job's predictions were stored")


def test_a_rejected_box_takes_its_mask_out_of_later_predictions(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    from engine.types import Feedback

    config = labeling_config(RECT, BRUSH)
    sam = chain_sam()
    tasks = image_tasks(tmp_path, [(48, 64)])
    with client_for(settings, store, sam) as http:
        version = setup(http, config)
        (first,) = predict(http, tasks, config)
        brush = by_type(first["result"], "brushlabels")[0]
        box = parent_of(
            store,
            item_id_of(tasks[0]),
            version,
            suggestion_of(store, item_id_of(tasks[0]), version, brush["id"]),
        )
        store.record_feedback(
            Feedback(item_id_of(tasks[0]), "reject", "t-1", suggestion_id=box.suggestion_id)
        )
        (second,) = predict(http, tasks, config)
    ids = {r["id"] for r in second["result"]}
    assert f"s{box.suggestion_id}" not in ids and brush["id"] not in ids
    assert len(second["result"]) < len(first["result"])


def test_a_click_after_predict_reuses_the_embedding_the_chain_computed(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    config = labeling_config(RECT, BRUSH, KEYPOINT)
    [task] = image_tasks(tmp_path, [(48, 64)])
    sam = chain_sam()
    with client_for(settings, store, sam) as http:
        predict(http, [task], config)
        assert (sam.encoder_calls, sam.images_encoded) == (1, 1)
        [out] = predict(http, [task], config, {"result": [keypoint(40.0, 50.0, size_wh=(64, 48))]})
    assert sam.encoder_calls == 1  # the click ran the decoder only
    assert out["model_version"] == sam.version
    [region] = out["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Animal"]


def test_a_job_stored_chained_prediction_is_served_without_running_a_model(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    config = labeling_config(RECT, BRUSH)
    [task] = image_tasks(tmp_path, [(48, 64)])
    job = create_prelabel_job(
        store, settings, model_name="tinydet", segmenter_name="tinysam", limit=None
    )
    # What the job's model actor writes: the chain under the job's version.
    path = Path(task["data"]["image"])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    item = Item(digest[:24], "image", uri=str(path), metadata={"key": digest})
    chain = ChainedModel(chain_detector(), chain_sam(), version=str(job.model_version))
    [prediction] = chain.predict([item], [np.asarray(Image.open(path).convert("RGB"))])
    store.add_items([item], [digest])
    store.save_predictions([prediction], [image_score(prediction)], job.job_id)

    sam = chain_sam()
    detector = UnusableDetector(chain_detector().version)
    with client_for(settings, store, sam, detector) as http:
        version = setup(http, config)
        [out] = predict(http, [task], config)
    assert version == job.model_version == out["model_version"]
    assert sam.encoder_calls == 0 and store.count_predictions() == 1
    shown = {r["id"] for r in out["result"]}
    stored = store.suggestions_for(item.item_id, model_version=version)
    masks = [r for r in stored if isinstance(r.suggestion.region, Mask)]
    assert by_type(out["result"], "brushlabels") and by_type(out["result"], "rectanglelabels")
    assert any(f"s{r.suggestion_id}" in shown for r in masks)
