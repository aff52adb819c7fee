"""Pre-label job parts without a Ray cluster: config, codec, scoring, planning, writes.

The stages are in test_prelabel_stages.py, sizing and the runtime in test_prelabel_sizing.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import tiny_yolo_spec, write_model_spec

from engine.config import REPO_CONFIG_DIR, ConfigError, ModelSpec, Settings, load_settings
from engine.ingest import ingest
from engine.prelabel.codec import decode_prediction, encode_prediction
from engine.prelabel.config import PrelabelConfig, load_prelabel_config
from engine.prelabel.job import (
    create_prelabel_job,
    job_inputs,
    plan_items,
    write_batch,
)
from engine.review.scoring import image_score
from engine.store import NotFoundError, Store
from engine.types import Box, Mask, Prediction, Span, Suggestion

TINY_SPEC = tiny_yolo_spec("tiny", imgsz_px=128, max_det=10, batch_size=4)


def _objects(values: Sequence[object]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _prediction(item_id: str, rows: list[list[float]], *, version: str = "v1") -> Prediction:
    probs = np.asarray(rows, dtype=np.float32).reshape(len(rows), 3)
    suggestions = tuple(
        Suggestion(
            label=f"c{int(r.argmax())}",
            score=float(r.max()),
            region=Box(1.0, 2.0, 30.0 + i, 40.0),
            model_name="m",
            model_version=version,
            attributes={"class_index": np.int64(r.argmax())},
        )
        for i, r in enumerate(probs)
    )
    return Prediction(
        item_id=item_id,
        model_name="m",
        model_version=version,
        suggestions=suggestions,
        probs=probs,
        class_names=("c0", "c1", "c2"),
    )


@pytest.fixture
def tiny_settings(tmp_path: Path) -> Settings:
    write_model_spec(tmp_path / "configs", TINY_SPEC)
    return load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path],
        config_dir=tmp_path / "configs",
        api_token="t",
    )


@pytest.fixture
def tiny_store(tiny_settings: Settings) -> Store:
    return Store(tiny_settings.resolved_database_url)


def _write_images(folder: Path, count: int, rng: np.random.Generator) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        shape = (int(rng.integers(40, 90)), int(rng.integers(40, 90)), 3)
        path = folder / f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


# -- config ------------------------------------------------------------------------


def test_shipped_job_config_matches_the_defaults() -> None:
    loaded = load_prelabel_config(REPO_CONFIG_DIR / "jobs" / "prelabel.yaml")
    assert loaded == PrelabelConfig()


def test_unknown_key_and_bad_type_name_the_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("batch_sise: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"job\.yaml: unknown key 'batch_sise'"):
        load_prelabel_config(path)
    path.write_text("actor_num_cpus: lots\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"job\.yaml: key 'actor_num_cpus'"):
        load_prelabel_config(path)


def test_overrides_win_and_none_overrides_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("limit: 7\nactor_num_cpus: 0.5\n", encoding="utf-8")
    config = load_prelabel_config(path, limit=None, write_batch_size=3)
    assert (config.limit, config.actor_num_cpus, config.write_batch_size) == (7, 0.5, 3)


def test_model_batch_size_comes_from_config_then_spec_then_default() -> None:
    spec = ModelSpec(name="m", family="yolo", params={"batch_size": 5})
    assert PrelabelConfig().model_batch_size(spec) == 5
    assert PrelabelConfig(batch_size=2).model_batch_size(spec) == 2
    assert PrelabelConfig().model_batch_size(ModelSpec(name="m", family="yolo")) == 8
    with pytest.raises(ConfigError, match="batch_size"):
        PrelabelConfig().model_batch_size(
            ModelSpec(name="m", family="yolo", params={"batch_size": 0})
        )


# -- scoring and codec -------------------------------------------------------------


def test_item_score_follows_the_detection_policy() -> None:
    # The box at 0.7 is shown; its most uncertain class (0.4 after the 0.7 one) decides.
    confident = image_score(_prediction("a", [[0.01, 0.99, 0.01]]))
    unsure = image_score(_prediction("a", [[0.1, 0.7, 0.2], [0.05, 0.3, 0.4]]))
    assert 0.0 <= confident < unsure <= 1.0
    assert image_score(_prediction("b", [])) == 1.0


def test_codec_round_trip_keeps_every_field() -> None:
    original = _prediction("a", [[0.1, 0.7, 0.2], [0.5, 0.2, 0.1]])
    mask = Mask(mask_rle="abc", height_px=50, width_px=60, box=Box(0, 0, 10, 10))
    extra = (
        Suggestion(label="c2", score=0.2, region=mask, model_name="m", model_version="v1"),
        Suggestion(
            label="x",
            score=0.9,
            region=Span(0, 3, "abc"),
            model_name="other",
            model_version="v9",
            parent_index=0,
        ),
    )
    original = Prediction(
        item_id="a",
        model_name="m",
        model_version="v1",
        suggestions=original.suggestions + extra,
        probs=np.vstack([original.probs, [[0.0, 0.0, 0.2], [0.9, 0.0, 0.0]]]),
        class_names=original.class_names,
        embedding=np.arange(4, dtype=np.float32),
        timings_ms={"forward_ms": 1.5},
    )
    decoded = decode_prediction(*encode_prediction(original))
    assert decoded.suggestions == original.suggestions
    assert [dict(s.attributes) for s in decoded.suggestions] == [
        {k: int(v) for k, v in s.attributes.items()} for s in original.suggestions
    ]
    np.testing.assert_array_equal(decoded.probs, original.probs)
    assert decoded.embedding is not None and original.embedding is not None
    np.testing.assert_array_equal(decoded.embedding, original.embedding)
    assert (decoded.item_id, decoded.class_names, dict(decoded.timings_ms)) == (
        "a",
        ("c0", "c1", "c2"),
        {"forward_ms": 1.5},
    )


def test_codec_round_trip_of_an_empty_prediction() -> None:
    decoded = decode_prediction(*encode_prediction(_prediction("e", [])))
    assert decoded.suggestions == () and decoded.probs.shape == (0, 3)
    assert decoded.embedding is None


# -- jobs, planning, writes --------------------------------------------------------


def test_create_job_records_config_spec_and_version(
    tiny_store: Store, tiny_settings: Settings, tmp_path: Path
) -> None:
    job_yaml = tmp_path / "job.yaml"
    job_yaml.write_text("write_batch_size: 3\n", encoding="utf-8")
    job = create_prelabel_job(
        tiny_store, tiny_settings, model_name="tiny", limit=4, job_config_path=job_yaml
    )
    assert (job.state, job.kind, job.model_name) == ("pending", "prelabel", "tiny")
    assert job.model_version is not None and job.model_version.startswith("tiny-")
    inputs = job_inputs(tiny_store.get_job(job.job_id))
    config, spec = inputs.config, inputs.spec
    assert (config.limit, config.write_batch_size, spec.params["imgsz_px"]) == (4, 3, 128)
    assert (inputs.models.kind, inputs.models.segmenter) == ("image", None)
    (tiny_settings.config_dir / "models" / "seg.yaml").write_text(
        "name: seg\nfamily: sam\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"'sam' model.*--segmenter"):
        create_prelabel_job(tiny_store, tiny_settings, model_name="seg")
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        create_prelabel_job(tiny_store, tiny_settings, model_name="nope")
    other = tiny_store.create_job("export", {})
    with pytest.raises(ValueError, match="not a 'prelabel' job"):
        job_inputs(other)


def test_plan_skips_predicted_items_and_limit_counts_the_jobs_own_work(
    tiny_store: Store, tiny_settings: Settings, tmp_path: Path
) -> None:
    _write_images(tmp_path / "imgs", 6, np.random.default_rng(2))
    ingest(tiny_store, str(tmp_path / "imgs"), tiny_settings.resolved_data_roots)
    ids = [item.item_id for item in tiny_store.iter_items()]
    todo, skipped = plan_items(tiny_store, "job-a", "v1", None)
    assert [row["item_id"] for row in todo] == ids and skipped == 0
    tiny_store.create_job("prelabel", {}, job_id="job-a")
    tiny_store.create_job("prelabel", {}, job_id="job-b")
    tiny_store.save_predictions([_prediction(ids[0], [])], [1.0], job_id="job-b")
    tiny_store.save_predictions([_prediction(ids[1], [])], [1.0], job_id="job-a")
    todo, skipped = plan_items(tiny_store, "job-a", "v1", 3)
    assert [row["item_id"] for row in todo] == ids[2:4] and skipped == 2
    assert tiny_store.count_predictions("v1", job_id="job-a") == 1
    todo, skipped = plan_items(tiny_store, "job-a", "v2", None)  # another version: redo all
    assert len(todo) == 6 and skipped == 0


def test_write_batch_is_idempotent_and_records_errors_once(
    tiny_store: Store, tiny_settings: Settings, tmp_path: Path
) -> None:
    _write_images(tmp_path / "imgs", 3, np.random.default_rng(3))
    ingest(tiny_store, str(tmp_path / "imgs"), tiny_settings.resolved_data_roots)
    a, b, c = (item.item_id for item in tiny_store.iter_items())
    tiny_store.create_job("prelabel", {}, job_id="job-w")
    encoded = [encode_prediction(_prediction(i, [[0.2, 0.6, 0.1]])) for i in (a, b)]
    batch = {
        "item_id": _objects([a, b, c]),
        "error": _objects(["", "", "ImageDecodeError: truncated"]),
        "meta": _objects([e[0] for e in encoded] + [""]),
        "probs": _objects([e[1] for e in encoded] + [b""]),
        "extras": _objects([e[2] for e in encoded] + [b""]),
        "score": np.array([0.4, 0.4, 0.0]),
    }
    assert write_batch(tiny_store, "job-w", batch) == (2, 1)
    assert write_batch(tiny_store, "job-w", batch) == (0, 1)
    job = tiny_store.get_job("job-w")
    assert (job.done, job.failed, job.skipped) == (2, 2, 2)
    assert tiny_store.count_predictions("v1") == 2
    assert [(e.item_id, e.message) for e in tiny_store.job_errors("job-w")] == [
        (c, "ImageDecodeError: truncated")
    ]
    assert len(tiny_store.suggestions_for(a, model_version="v1")) == 1


def test_failure_message_drops_terminal_colour_codes() -> None:
    from engine.prelabel.runner import failure_message

    exc = RuntimeError("\x1b[36mray::MapWorker.__init__()\x1b[39m died\nAssetError: missing")
    assert (
        failure_message(exc) == "RuntimeError: ray::MapWorker.__init__() died\nAssetError: missing"
    )


def test_running_an_unknown_job_is_not_found(tiny_store: Store, tiny_settings: Settings) -> None:
    from engine.prelabel.job import run_prelabel_job

    with pytest.raises(NotFoundError):
        run_prelabel_job(tiny_store, tiny_settings, "prelabel-missing")
