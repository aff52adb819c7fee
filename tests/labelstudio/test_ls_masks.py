"""Label Studio ``/predict`` with mask controls: the detector chained with the segmenter.

A config with ``BrushLabels`` / ``PolygonLabels`` on the ``<Image>`` is served by
detector -> segmenter (the server's interactive SAM, cache kept) under the version
``labelengine prelabel --model <detector> --segmenter <segmenter>`` records. Real
parts: the FastAPI app in-process, a SQLite store, a tiny random YOLO11 (class biases
set so it finds cats, trees and cars) and a tiny random LiteMedSAM (its IoU head
biased so masks pass the display threshold), named by model specs in a temporary
config folder (tests/ml_backend.py). What the store and the cache give back on later
calls: test_ls_masks_reuse.py; real weights: test_ls_real_weights.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ml_backend import (
    BASIC,
    BRUSH,
    KEYPOINT,
    POLYGON,
    RECT,
    by_type,
    chain_detector,
    chain_sam,
    chain_settings,
    client_for,
    expected_job_version,
    image_tasks,
    item_id_of,
    labeling_config,
    parent_of,
    predict,
    setup,
    suggestion_of,
)
from PIL import Image

from engine.config import Settings
from engine.labelstudio.brush_rle import brush_rle_to_mask
from engine.store import Store
from engine.types import Box, Mask


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The detector and interactive model are tiny ones named by specs (tests/ml_backend.py)."""
    return chain_settings(tmp_path)


def test_rectangles_and_brushes_come_from_the_chain(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    from label_studio_sdk.converter.brush import decode_rle

    config = labeling_config(RECT, BRUSH, KEYPOINT)
    sam = chain_sam()
    tasks = image_tasks(tmp_path, [(48, 64), (30, 90)])
    with client_for(settings, store, sam) as http:
        version = setup(http, config)
        assert version == expected_job_version(store, settings)
        assert version != chain_detector().version and version.startswith("tinydet-")
        results = predict(http, tasks, config)
        versions = http.get("/versions", headers=BASIC).json()["versions"]
    assert version in versions and chain_detector().version in versions
    assert sam.images_encoded == 2
    for task, out in zip(tasks, results, strict=True):
        assert out["model_version"] == version
        item_id = item_id_of(task)
        height, width = np.asarray(Image.open(task["data"]["image"])).shape[:2]
        rects, brushes = (
            by_type(out["result"], "rectanglelabels"),
            by_type(out["result"], "brushlabels"),
        )
        assert rects and brushes
        assert {r["type"] for r in out["result"]} == {"rectanglelabels", "brushlabels"}
        rect_ids = {r["id"] for r in rects}
        for rect in rects:  # every rectangle is a detector box, none a mask's outline
            record = suggestion_of(store, item_id, version, rect["id"])
            assert isinstance(record.suggestion.region, Box)
        for brush in brushes:
            assert brush["value"]["brushlabels"] == ["Animal"]
            assert (brush["original_width"], brush["original_height"]) == (width, height)
            flat = decode_rle(brush["value"]["rle"])
            assert flat.size == height * width * 4
            mask = brush_rle_to_mask(brush["value"]["rle"], height, width)
            assert np.array_equal(mask, flat.reshape(height, width, 4)[..., 3] > 0)
            record = suggestion_of(store, item_id, version, brush["id"])
            assert isinstance(record.suggestion.region, Mask)
            box = parent_of(store, item_id, version, record)
            assert box.suggestion.label == record.suggestion.label == "cat"
            assert f"s{box.suggestion_id}" in rect_ids  # its box is shown as a rectangle
        stored = store.suggestions_for(item_id, model_version=version)
        masks = [r.suggestion for r in stored if isinstance(r.suggestion.region, Mask)]
        assert "car" in {m.label for m in masks}  # masked, but no brush label: not shown
    # Served from the store the second time: same regions, nothing run again.
    count, calls = store.count_predictions(), sam.encoder_calls
    with client_for(settings, store, sam) as http:
        assert predict(http, tasks, config) == results
    assert store.count_predictions() == count and sam.encoder_calls == calls


def test_polygon_labels_come_back_as_outlines_in_percent(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    config = labeling_config(RECT, POLYGON)
    [task] = image_tasks(tmp_path, [(40, 72)])
    with client_for(settings, store, chain_sam()) as http:
        version = setup(http, config)
        [out] = predict(http, [task], config)
    assert version == expected_job_version(store, settings)
    assert out["model_version"] == version
    polygons = by_type(out["result"], "polygonlabels")
    assert polygons and by_type(out["result"], "rectanglelabels")
    for region in polygons:
        assert (region["from_name"], region["to_name"]) == ("outline", "image")
        assert (region["original_width"], region["original_height"]) == (72, 40)
        value = region["value"]
        assert value["polygonlabels"] == ["Animal"] and value["closed"] is True
        points = np.asarray(value["points"], dtype=float)
        assert points.ndim == 2 and points.shape[1] == 2 and len(points) >= 3
        assert points.min() >= 0.0 and points.max() <= 100.0 + 1e-6
        assert points[:, 0].max() > 100.0 * 2 / 72  # percent, not pixels or fractions


def test_brush_labels_alone_get_masks_and_no_rectangles(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    config = labeling_config(BRUSH)
    [task] = image_tasks(tmp_path, [(48, 48)])
    with client_for(settings, store, chain_sam()) as http:
        version = setup(http, config)
        [out] = predict(http, [task], config)
    assert version == expected_job_version(store, settings)
    assert out["result"] and {r["type"] for r in out["result"]} == {"brushlabels"}
    boxes = [
        r
        for r in store.suggestions_for(item_id_of(task), model_version=version)
        if isinstance(r.suggestion.region, Box)
    ]
    assert boxes  # stored with the prediction, but no control shows them


def test_a_config_without_mask_controls_keeps_the_detector_alone(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    config = labeling_config(RECT, KEYPOINT)
    [task] = image_tasks(tmp_path, [(48, 64)])
    with client_for(settings, store, chain_sam()) as http:
        version = setup(http, config)
        [out] = predict(http, [task], config)
        assert not http.app.state.segmenter.loaded  # type: ignore[attr-defined]
        versions = http.get("/versions", headers=BASIC).json()["versions"]
    assert version == out["model_version"] == chain_detector().version
    assert versions == [version]  # no tagger configured; the segmenter is not loaded
    assert out["result"] and {r["type"] for r in out["result"]} == {"rectanglelabels"}


def test_masks_need_a_sam_interactive_model(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"interactive_model": "tinydet"})
    config = labeling_config(RECT, BRUSH)
    [task] = image_tasks(tmp_path, [(48, 64)])
    with client_for(settings, store, chain_sam()) as http:
        version = setup(http, config)
        [out] = predict(http, [task], config)
    assert version == out["model_version"] == chain_detector().version
    assert {r["type"] for r in out["result"]} == {"rectanglelabels"}
