"""A pre-label job with the ``classifier`` family, run in this process: one whole-item
suggestion per image, the class row, the embedding and the queue score stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import CLASSIFIER_CLASSES, save_tiny_classifier, write_model_spec

from engine.config import load_settings
from engine.ingest import ingest
from engine.prelabel import runtime
from engine.prelabel.job import create_prelabel_job, run_prelabel_job
from engine.store import Store


def test_a_classifier_job_stores_one_class_per_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RAY_ADDRESS", runtime.LOCAL_HEAD_ENV):  # no cluster: the job runs here
        monkeypatch.delenv(name, raising=False)
    asset = save_tiny_classifier(tmp_path / "tiny.pth")
    params = {"class_names": list(CLASSIFIER_CLASSES), "image_size_px": 64, "batch_size": 2}
    spec = {"name": "tinyclf", "family": "classifier", "asset": asset, "params": params}
    write_model_spec(tmp_path / "configs", spec)
    models_dir = tmp_path / "models" / "tinyclf"
    models_dir.mkdir(parents=True)
    (models_dir / "tiny.pth").write_bytes((tmp_path / "tiny.pth").read_bytes())
    settings = load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path],
        config_dir=tmp_path / "configs",
        models_dir=tmp_path / "models",
        api_token="t",
    )
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        pixels = rng.integers(0, 256, (30 + 10 * i, 50, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.png")
    store = Store(settings.resolved_database_url)
    try:
        assert not ingest(store, str(folder), settings.resolved_data_roots).errors
        job = create_prelabel_job(store, settings, model_name="tinyclf")
        final = run_prelabel_job(store, settings, job.job_id)
        assert (final.state, final.done, final.failed) == ("succeeded", 3, 0)
        for item in store.list_items():
            (record,) = store.suggestions_for(item.item_id)
            assert record.suggestion.region is None
            assert record.suggestion.label in CLASSIFIER_CLASSES
            score = store.item_score(item.item_id)
            assert score is not None and 0.0 <= score <= 1.0
    finally:
        store.close()
