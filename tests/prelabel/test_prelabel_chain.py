"""Detector -> segmenter chaining in the pre-label job.

Tiny random YOLO11n and SAM (vit_b) models for the contract, called directly
and once through the real job on the session's Ray node (slow); the real
yolo11n + LiteMedSAM weights on ultralytics' bus / zidane photos (slow; fails
when the weights are not in the models cache: `labelengine models pull`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image
from tiny_models import tiny_sam_spec, tiny_yolo_spec, write_model_spec

from engine.config import ConfigError, ModelSpec, Settings, load_settings
from engine.imaging.masks import decode_rle
from engine.ingest import ingest
from engine.models.chain import ChainedModel
from engine.models.registry import build_model
from engine.models.sam.segmenter import SamSegmenter
from engine.models.versioning import spec_version
from engine.prelabel.codec import decode_prediction, objects
from engine.prelabel.job import create_prelabel_job, job_inputs, run_prelabel_job
from engine.prelabel.stages import Predictor
from engine.review.scoring import image_score
from engine.sampling.policies import mask_item_scores
from engine.store import Store
from engine.types import Box, Item, Mask, Prediction, Suggestion

if TYPE_CHECKING:
    from conftest import RayCluster

DET = tiny_yolo_spec("tinydet", imgsz_px=128, max_det=5, conf_floor=0.0, batch_size=2)
SEG = tiny_sam_spec("tinysam", variant="vit_b")


def _images(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [
        rng.integers(0, 256, (int(rng.integers(40, 120)), int(rng.integers(40, 120)), 3), np.uint8)
        for _ in range(count)
    ]


def _items(n: int) -> list[Item]:
    return [Item(f"i{k}", "image", uri=f"/i{k}.png", metadata={"key": f"k{k}"}) for k in range(n)]


def _write_specs(config_dir: Path) -> None:
    for spec in (DET, SEG, {"name": "spacy-sm", "family": "spacy"}):
        write_model_spec(config_dir, spec)


@pytest.fixture(scope="module")
def detector() -> Any:
    return build_model(ModelSpec.model_validate(DET), Path("/nonexistent"), device="cpu")


def _segmenter() -> SamSegmenter:
    model = build_model(ModelSpec.model_validate(SEG), Path("/nonexistent"), device="cpu")
    assert isinstance(model, SamSegmenter)
    return model


def _check_masks_inside(prediction: Prediction, image_hw: tuple[int, int]) -> None:
    for s in prediction.suggestions:
        if isinstance(s.region, Mask):
            assert (s.region.height_px, s.region.width_px) == image_hw
            assert decode_rle(s.region.mask_rle, *image_hw).shape == image_hw
            assert s.region.box.x2 <= image_hw[1] and s.region.box.y2 <= image_hw[0]


# -- the chained model, directly ---------------------------------------------------


def test_each_box_at_or_above_the_threshold_gets_one_linked_mask(detector: Any) -> None:
    images = _images(3, np.random.default_rng(0))
    items = _items(3)
    detections = detector.predict(items, images)
    scores = sorted(s.score for p in detections for s in p.suggestions)
    threshold = scores[len(scores) // 2]  # some boxes above, some below
    segmenter = _segmenter()
    chain = ChainedModel(detector, segmenter, version="det+seg-x", min_box_score=threshold)
    predictions = chain.predict(items, images)

    assert segmenter.images_encoded == 3  # one encoder pass per image
    assert segmenter.encoder_calls == math.ceil(3 / segmenter.batch_size)
    assert segmenter.cache.stats()["bytes"] == 0  # nothing kept in the actor's memory
    n_masks = 0
    for detection, prediction, image in zip(detections, predictions, images, strict=True):
        n_boxes = len(detection.suggestions)
        assert prediction.model_version == "det+seg-x" and prediction.model_name == chain.name
        assert prediction.suggestions[:n_boxes] == detection.suggestions  # boxes unchanged
        masks = prediction.suggestions[n_boxes:]
        wanted = [i for i, s in enumerate(detection.suggestions) if s.score >= threshold]
        assert [m.parent_index for m in masks] == wanted
        for mask in masks:
            assert mask.parent_index is not None
            box = prediction.suggestions[mask.parent_index]
            assert isinstance(box.region, Box) and isinstance(mask.region, Mask)
            assert mask.label == box.label and mask.score <= box.score
            assert (mask.model_name, mask.model_version) == (segmenter.name, segmenter.version)
            assert {"predicted_iou", "stability_score", "multimask_disagreement"} <= set(
                mask.attributes
            )
        np.testing.assert_array_equal(prediction.probs[n_boxes:], detection.probs[wanted])
        _check_masks_inside(prediction, image.shape[:2])
        n_masks += len(masks)
    assert 0 < n_masks < len(scores)


def test_box_trained_litemedsam_decodes_one_mask_per_box(detector: Any) -> None:
    spec = ModelSpec(name="lite", family="sam", params={"variant": "litemedsam", "tiny": True})
    lite = build_model(spec, Path("/nonexistent"), device="cpu")
    assert isinstance(lite, SamSegmenter)
    chain = ChainedModel(detector, lite, version="v", min_box_score=0.0)
    assert chain.multimask is False  # its three multimask outputs were never trained
    (prediction,) = chain.predict(_items(1), _images(1, np.random.default_rng(1)))
    masks = [s for s in prediction.suggestions if isinstance(s.region, Mask)]
    assert masks and all("multimask_disagreement" not in m.attributes for m in masks)
    assert all(m.attributes["mask_index"] == 0 for m in masks)


def test_chained_score_is_the_max_of_detection_and_mask_scores() -> None:
    rows = np.array([[0.97, 0.01], [0.95, 0.02]], dtype=np.float32)
    boxes = tuple(Suggestion("cat", float(r.max()), Box(0, 0, 9, 9), "det", "d") for r in rows)
    detection = Prediction("a", "det", "d", boxes, rows, ("cat", "dog"))

    def chained(iou: float, stability: float) -> Prediction:
        attributes = {"predicted_iou": iou, "stability_score": stability}
        region = Mask("0", 10, 10, Box(0, 0, 1, 1))
        mask = Suggestion("cat", 0.9, region, "seg", "s", attributes, parent_index=0)
        return Prediction(
            "a", "c", "d+s", (*boxes, mask), np.vstack([rows, rows[:1]]), ("cat", "dog")
        )

    detection_score = image_score(detection)
    good, shaky = chained(0.99, 0.98), chained(0.9, 0.2)
    assert image_score(good) == pytest.approx(detection_score)  # a good mask adds nothing
    assert image_score(shaky) == pytest.approx(
        max(detection_score, float(mask_item_scores([0.9], [0.2], [0], 1)[0]))
    )
    assert image_score(shaky) > detection_score


# -- job records, predictor checks ---------------------------------------------------


def test_chained_job_records_both_models_and_one_combined_version(
    store: Store, tmp_path: Path
) -> None:
    _write_specs(tmp_path / "configs")
    settings = load_settings(data_dir=tmp_path / "data", config_dir=tmp_path / "configs")
    job = create_prelabel_job(store, settings, model_name="tinydet", segmenter_name="tinysam")
    det_version = spec_version(ModelSpec.model_validate(DET))
    seg_version = spec_version(ModelSpec.model_validate(SEG))
    assert job.model_name == "tinydet+tinysam"
    assert str(job.model_version).startswith(f"{det_version}+{seg_version}-")
    inputs = job_inputs(store.get_job(job.job_id))
    assert inputs.models.segmenter is not None and inputs.models.segmenter.name == "tinysam"
    assert inputs.models.job_version == job.model_version
    other = tmp_path / "job.yaml"
    other.write_text("mask_min_box_score: 0.5\n", encoding="utf-8")
    stricter = create_prelabel_job(
        store, settings, model_name="tinydet", segmenter_name="tinysam", job_config_path=other
    )
    assert stricter.model_version != job.model_version  # other masks: other version
    with pytest.raises(ConfigError, match=r"expected one of the families \['sam'\]"):
        create_prelabel_job(store, settings, model_name="tinydet", segmenter_name="tinydet")
    with pytest.raises(ConfigError, match="not an image detector"):
        create_prelabel_job(store, settings, model_name="spacy-sm", segmenter_name="tinysam")


def test_predictor_refuses_a_model_whose_version_is_not_the_jobs() -> None:
    with pytest.raises(RuntimeError, match="start a new job"):
        Predictor(DET, "/nonexistent", device="cpu", torch_threads=1, expected_version="old")


def test_predictor_chains_and_isolates_a_bad_image() -> None:
    predictor = Predictor(
        DET, "/nonexistent", device="cpu", torch_threads=1, segmenter_spec=SEG,
        mask_min_box_score=0.0,
    )  # fmt: skip
    images = [*_images(2, np.random.default_rng(2)), np.zeros((5, 5), np.uint8)]
    batch = {
        "item_id": objects(["a", "b", "c"]),
        "uri": objects(["/a", "/b", "/c"]),
        "key": objects(["ka", "kb", "kc"]),
        "image": objects(images),
        "error": objects(["", "", ""]),
    }
    out = predictor(batch)
    assert out["error"][:2].tolist() == ["", ""] and "ValueError" in out["error"][2]
    for k in range(2):
        prediction = decode_prediction(out["meta"][k], out["probs"][k], out["extras"][k])
        assert any(isinstance(s.region, Mask) for s in prediction.suggestions)
        assert out["score"][k] == pytest.approx(image_score(prediction))
        _check_masks_inside(prediction, images[k].shape[:2])


# -- the real job on Ray (slow) ------------------------------------------------------

JOB_YAML = (
    "executor: ray\nrows_per_block: 2\ndecode_batch_size: 2\nwrite_batch_size: 2\n"
    "torch_threads: 1\nmask_min_box_score: 0.0\n"
)


@pytest.fixture(scope="module")
def ray_base(
    tmp_path_factory: pytest.TempPathFactory, ray_cluster: RayCluster
) -> tuple[Path, Settings]:
    """Photos and configs for the job; it runs on the session's Ray node."""
    root = tmp_path_factory.mktemp("chain")
    _write_specs(root / "configs")
    (root / "configs" / "jobs").mkdir()
    (root / "configs" / "jobs" / "prelabel.yaml").write_text(JOB_YAML, encoding="utf-8")
    photos = root / "photos"
    photos.mkdir()
    for k, image in enumerate(_images(5, np.random.default_rng(3))):
        Image.fromarray(image).save(photos / f"p{k}.png")
    (photos / "broken.png").write_bytes(b"not a png")
    settings = load_settings(
        data_dir=root / "data", data_roots=[root], config_dir=root / "configs", ray_num_cpus=2
    )
    return root, settings


@pytest.mark.slow
def test_chained_job_links_masks_to_boxes_and_resumes(ray_base: tuple[Path, Settings]) -> None:
    root, settings = ray_base
    store = Store(settings.resolved_database_url)
    assert not ingest(store, str(root / "photos"), settings.resolved_data_roots).errors
    first = create_prelabel_job(
        store, settings, model_name="tinydet", segmenter_name="tinysam", limit=3
    )
    first = run_prelabel_job(store, settings, first.job_id)
    assert first.state == "succeeded", first.message
    assert first.done + first.failed == 3
    job = create_prelabel_job(store, settings, model_name="tinydet", segmenter_name="tinysam")
    final = run_prelabel_job(store, settings, job.job_id)
    assert final.state == "succeeded", final.message
    assert (final.skipped, final.done, final.failed) == (first.done, 5 - first.done, 1)
    assert [e.message.split(":")[0] for e in store.job_errors(job.job_id)] == ["ImageDecodeError"]
    version = str(final.model_version)
    assert store.count_predictions(version) == 5
    for item in store.iter_items():
        records = store.suggestions_for(item.item_id, model_version=version)
        if Path(str(item.uri)).name == "broken.png":
            assert records == []
            continue
        boxes = {r.position: r.suggestion for r in records if isinstance(r.suggestion.region, Box)}
        masks = [r.suggestion for r in records if isinstance(r.suggestion.region, Mask)]
        assert boxes and len(masks) == len(boxes)  # threshold 0: every box has its mask
        assert sorted(m.parent_index for m in masks) == sorted(boxes)  # type: ignore[type-var]
        width, height = Image.open(str(item.uri)).size
        for mask in masks:
            assert mask.parent_index is not None
            assert mask.label == boxes[mask.parent_index].label
            assert mask.model_name == "tinysam" and mask.model_version != version
            assert isinstance(mask.region, Mask)
            assert (mask.region.height_px, mask.region.width_px) == (height, width)
    store.close()


# -- real weights (slow) -------------------------------------------------------------


@pytest.mark.slow
def test_real_person_boxes_get_masks_covering_a_plausible_share() -> None:
    from engine.assets import asset_status
    from engine.cli.samples import ultralytics_asset
    from engine.config import REPO_CONFIG_DIR, get_model_spec

    settings = load_settings(config_dir=REPO_CONFIG_DIR)
    specs = [get_model_spec(settings, name) for name in ("yolo11n", "litemedsam")]
    for spec in specs:
        status = asset_status(settings.resolved_models_dir, spec)
        if status.state != "present":
            pytest.fail(
                f"weights of {spec.name} are {status.state} in {settings.models_dir} "
                "(labelengine models pull)"
            )
    detector, segmenter = (s.model_dump(mode="json") for s in specs)
    predictor = Predictor(
        detector, str(settings.resolved_models_dir), device="cpu", segmenter_spec=segmenter
    )
    names = ["bus.jpg", "zidane.jpg"]
    images = [np.asarray(Image.open(ultralytics_asset(n)).convert("RGB")) for n in names]
    out = predictor(
        {
            "item_id": objects(names),
            "uri": objects(names),
            "image": objects(images),
            "error": objects(["", ""]),
        }
    )
    assert out["error"].tolist() == ["", ""]
    shares, inside = [], []
    for k, image in enumerate(images):
        prediction = decode_prediction(out["meta"][k], out["probs"][k], out["extras"][k])
        for s in prediction.suggestions:
            if not isinstance(s.region, Mask) or s.parent_index is None:
                continue
            box = prediction.suggestions[s.parent_index]
            if box.label != "person" or box.score < 0.5:
                continue
            assert isinstance(box.region, Box)
            mask = decode_rle(s.region.mask_rle, *image.shape[:2])
            x1, y1, x2, y2 = (round(v) for v in box.region.box_xyxy)
            shares.append(mask[y1:y2, x1:x2].sum() / box.region.area_px)
            inside.append(mask[y1:y2, x1:x2].sum() / max(mask.sum(), 1))
    assert len(shares) >= 4  # bus.jpg and zidane.jpg show at least 4 clear people
    # A person mask fills part of its box (limbs and background share it); a partly
    # hidden person at the image edge can get a small one, so bound the median tightly.
    assert all(0.1 <= share <= 0.95 for share in shares), shares
    assert 0.3 <= float(np.median(shares)) <= 0.8, shares
    assert min(inside) >= 0.9, inside  # a box-prompted mask stays in its box


def test_the_chain_keeps_the_disk_tier_and_its_bound(detector: Any, tmp_path: Path) -> None:
    from engine.models.sam.embedding_cache import EmbeddingCache

    segmenter = _segmenter()
    segmenter.cache = EmbeddingCache(1 << 20, disk_dir=tmp_path, disk_max_bytes=5_000_000)
    ChainedModel(detector, segmenter, version="det+seg-x")
    assert segmenter.cache.max_bytes == 0
    assert segmenter.cache.disk_dir == tmp_path.resolve()
    assert segmenter.cache.disk_max_bytes == 5_000_000
