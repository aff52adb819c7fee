"""Label Studio ``/predict`` served by the real models on ultralytics' bus photo: yolo11n
alone for rectangles, yolo11n chained with LiteMedSAM for brushes (slow).

Needs the weights (`labelengine models pull`): a test fails when they are missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from ml_backend import (
    BOX_CONFIG,
    KEYPOINT,
    by_type,
    clear_label_studio_env,
    expected_job_version,
    image_task,
    item_id_of,
    keypoint,
    labeling_config,
    parent_of,
    predict,
    setup,
    suggestion_of,
)

from engine.config import REPO_CONFIG_DIR, Settings, load_settings
from engine.labelstudio.brush_rle import brush_rle_to_mask
from engine.labelstudio.models import ModelHolder
from engine.serving.app import create_app
from engine.store import Store
from engine.types import Box


@pytest.fixture(autouse=True)
def no_label_studio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_label_studio_env(monkeypatch)


@pytest.mark.slow
def test_real_yolo11n_labels_the_bus_photo(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    import importlib.util

    weights = settings.resolved_models_dir / "yolo11n" / "yolo11n.pt"
    if not weights.is_file():
        pytest.fail(f"real weights not found at {weights} (labelengine models pull yolo11n)")
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None and spec.origin is not None
    bus = tmp_path / "bus.jpg"
    bus.write_bytes((Path(spec.origin).parent / "assets" / "bus.jpg").read_bytes())
    config = BOX_CONFIG.replace('value="Animal" predicted_values="cat,dog"', 'value="Person"')
    config = config.replace('predicted_values="car"', 'predicted_values="bus,car,truck"')
    with TestClient(create_app(settings, store, models=ModelHolder(settings))) as http:
        version = setup(http, config)
        assert version.startswith("yolo11n-")
        [out] = predict(http, [image_task(1, str(bus))], config)
    assert out["model_version"] == version
    labels = [r["value"]["rectanglelabels"][0] for r in out["result"]]
    assert labels.count("Person") >= 3
    vehicles = [r["value"] for r in out["result"] if r["value"]["rectanglelabels"] == ["Vehicle"]]
    assert any(v["width"] * v["height"] > 30 * 30 for v in vehicles)  # the bus, in percent^2
    assert all(r["original_width"] == 810 and r["original_height"] == 1080 for r in out["result"])


@pytest.mark.slow
def test_real_yolo11n_and_litemedsam_mask_the_bus_photo(store: Store, tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path / "real",
        data_roots=[tmp_path],
        config_dir=REPO_CONFIG_DIR,
        api_token="test-token",
    )
    models_dir = settings.resolved_models_dir
    for weights in (
        models_dir / "yolo11n" / "yolo11n.pt",
        models_dir / "litemedsam" / "lite_medsam.pth",
    ):
        if not weights.is_file():
            pytest.fail(f"real weights not found at {weights} (labelengine models pull)")
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None and spec.origin is not None
    bus = tmp_path / "bus.jpg"
    bus.write_bytes((Path(spec.origin).parent / "assets" / "bus.jpg").read_bytes())
    labels = '<Label value="Person" predicted_values="person"/>' + (
        '<Label value="Vehicle" predicted_values="bus,car,truck"/>'
    )
    config = labeling_config(
        f'<RectangleLabels name="box" toName="image">{labels}</RectangleLabels>',
        f'<BrushLabels name="brush" toName="image">{labels}</BrushLabels>',
        KEYPOINT,
    )
    task = {"id": 1, "data": {"image": str(bus)}}
    with TestClient(create_app(settings, store, models=ModelHolder(settings))) as http:
        version = setup(http, config)
        assert version == expected_job_version(store, settings)
        [out] = predict(http, [task], config)
        sam = http.app.state.segmenter.model  # type: ignore[attr-defined]
        calls = sam.encoder_calls
        [clicked] = predict(
            http, [task], config, {"result": [keypoint(50.0, 60.0, size_wh=(810, 1080))]}
        )
        assert sam.encoder_calls == calls  # the chain's embedding answered the click
    assert clicked["result"] and clicked["result"][0]["type"] == "brushlabels"
    assert out["model_version"] == version
    rects, brushes = (
        by_type(out["result"], "rectanglelabels"),
        by_type(out["result"], "brushlabels"),
    )
    assert sum(r["value"]["rectanglelabels"] == ["Person"] for r in rects) >= 3
    assert sum(r["value"]["brushlabels"] == ["Person"] for r in brushes) >= 3
    assert any(r["value"]["brushlabels"] == ["Vehicle"] for r in brushes)
    item_id = item_id_of(task)
    rect_ids = {r["id"] for r in rects}
    for brush in brushes:
        mask = brush_rle_to_mask(brush["value"]["rle"], 1080, 810)
        record = suggestion_of(store, item_id, version, brush["id"])
        parent = parent_of(store, item_id, version, record)
        assert f"s{parent.suggestion_id}" in rect_ids
        box = parent.suggestion.region
        assert isinstance(box, Box) and mask.sum() > 100
        x1, y1 = int(box.x1) - 2, int(box.y1) - 2
        inside = mask[max(y1, 0) : int(np.ceil(box.y2)) + 2, max(x1, 0) : int(np.ceil(box.x2)) + 2]
        assert inside.sum() / mask.sum() >= 0.9, (brush["value"]["brushlabels"], box)
