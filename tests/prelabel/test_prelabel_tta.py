"""The pre-label job key ``tta``: validated with the config, written into the yolo spec's
``params.tta`` (so into the job's version), built by the registry, stored with the
prediction. The signals themselves are in tests/models/test_yolo_tta.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_models import image_items, random_images, tiny_yolo_spec, write_model_spec

from engine.config import ConfigError, ModelSpec, Settings, load_settings
from engine.models.registry import build_model
from engine.models.yolo import YoloDetector
from engine.prelabel.codec import decode_prediction, encode_prediction
from engine.prelabel.config import PrelabelConfig, load_prelabel_config
from engine.prelabel.job import create_prelabel_job, job_inputs
from engine.store import Store

SPEC = tiny_yolo_spec("tiny", imgsz_px=64, max_det=5, conf_floor=0.0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    write_model_spec(tmp_path / "configs", SPEC)
    write_model_spec(tmp_path / "configs", {"name": "spacy-sm", "family": "spacy"})
    return load_settings(
        data_dir=tmp_path / "data", data_roots=[tmp_path], config_dir=tmp_path / "configs"
    )


def test_the_key_is_checked_when_the_config_is_read(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text('tta: [hflip, "scale:0.83"]\n', encoding="utf-8")
    assert load_prelabel_config(path).tta == ("hflip", "scale:0.83")
    assert PrelabelConfig().tta is None
    for text in ("tta: [vflip]\n", "tta: hflip\n"):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match="tta"):
            load_prelabel_config(path)


def test_the_key_becomes_the_detectors_param() -> None:
    spec = ModelSpec.model_validate({**SPEC, "params": {**SPEC["params"], "tta": ["hflip"]}})
    assert PrelabelConfig().spec_with_tta(spec) is spec  # unset: the spec's own
    assert PrelabelConfig(tta=("scale:0.8",)).spec_with_tta(spec).params["tta"] == ["scale:0.8"]
    off = PrelabelConfig(tta=()).spec_with_tta(spec)
    assert "tta" not in off.params and off.params["imgsz_px"] == 64
    tagger = ModelSpec.model_validate({"name": "ner", "family": "spacy"})
    with pytest.raises(ConfigError, match="yolo detectors"):
        PrelabelConfig(tta=("hflip",)).spec_with_tta(tagger)


def test_a_job_with_tta_records_it_in_its_spec_and_version(
    settings: Settings, tmp_path: Path
) -> None:
    store = Store(settings.resolved_database_url)
    job_yaml = tmp_path / "tta.yaml"
    job_yaml.write_text("tta: [hflip]\n", encoding="utf-8")
    plain = create_prelabel_job(store, settings, model_name="tiny")
    with_tta = create_prelabel_job(store, settings, model_name="tiny", job_config_path=job_yaml)
    assert plain.model_version != with_tta.model_version
    inputs = job_inputs(store.get_job(with_tta.job_id))
    assert inputs.spec.params["tta"] == ["hflip"] and inputs.config.tta == ("hflip",)
    assert "tta" not in job_inputs(store.get_job(plain.job_id)).spec.params
    with pytest.raises(ConfigError, match="yolo detectors"):
        create_prelabel_job(store, settings, model_name="spacy-sm", job_config_path=job_yaml)

    model = build_model(inputs.spec, settings.resolved_models_dir, device="cpu")
    assert isinstance(model, YoloDetector) and model.version == inputs.models.version
    prediction = model.predict(
        image_items(1), random_images(np.random.default_rng(0), ((40, 50),))
    )[0]
    assert prediction.signals["tta_probs"].shape[:2] == (1, len(prediction.suggestions))
    stored = decode_prediction(*encode_prediction(prediction))
    assert stored.embedding is not None and stored.embedding.shape == (256,)
    np.testing.assert_allclose(
        stored.signals["tta_variation_ratio"], prediction.signals["tta_variation_ratio"], atol=1e-3
    )
