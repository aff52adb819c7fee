"""SamSegmenter on tiny random SAMs: shapes, parity with SamPredictor, prompts, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiny_models
import torch
from segment_anything import SamPredictor

from engine.config import ModelSpec
from engine.models.sam.segmenter import SamSegmenter

HEIGHT, WIDTH = 90, 120


@pytest.fixture(scope="module")
def lite() -> SamSegmenter:
    return tiny_models.tiny_sam("litemedsam")


@pytest.fixture(scope="module")
def vitb() -> SamSegmenter:
    return tiny_models.tiny_sam("vit_b", seed=1)


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    img[20:60, 30:90] = rng.integers(150, 255, (40, 60, 3), dtype=np.uint8)
    return img


def _stock(seg: SamSegmenter, image: np.ndarray, **prompt: object) -> tuple:
    predictor = SamPredictor(seg.sam)
    predictor.set_image(image)
    return predictor.predict(**prompt)


def test_embed_shapes_and_sizes(lite: SamSegmenter, image: np.ndarray) -> None:
    emb = lite.embed(None, image)
    assert emb.features.shape == (1, 32, 16, 16)
    assert emb.original_size_hw == (HEIGHT, WIDTH)
    assert emb.input_size_hw == (48, 64)  # longest side -> img_size 64
    assert emb.model_version == lite.version == "random-0-litemedsam-tiny"


def test_single_and_multimask_results(vitb: SamSegmenter, image: np.ndarray) -> None:
    emb = vitb.embed(None, image)
    (single,) = vitb.segment(emb, points_xy=[[50, 40]], point_labels=[1])
    assert single.mask.shape == (HEIGHT, WIDTH) and single.mask.dtype == np.bool_
    assert single.low_res_logits.shape == (1, vitb.low_res_size, vitb.low_res_size)
    assert single.mask_index == 0 and single.multimask_disagreement is None
    assert 0.0 <= single.stability_score <= 1.0
    multi = vitb.segment(emb, points_xy=[[50, 40]], point_labels=[1], multimask=True)
    assert sorted(r.mask_index for r in multi) == [1, 2, 3]
    ious = [r.predicted_iou for r in multi]
    assert ious == sorted(ious, reverse=True)
    spread = {r.multimask_disagreement for r in multi}
    assert len(spread) == 1
    value = spread.pop()
    assert value is not None and 0.0 <= value <= 1.0


@pytest.mark.parametrize("multimask", [False, True])
def test_matches_stock_sam_predictor(
    vitb: SamSegmenter, image: np.ndarray, multimask: bool
) -> None:
    emb = vitb.embed(None, image)
    prompt = {
        "point_coords": np.array([[50.0, 40.0], [10.0, 80.0]]),
        "point_labels": np.array([1, 0]),
        "box": np.array([20.0, 10.0, 100.0, 70.0]),
    }
    masks, ious, lows = _stock(vitb, image, multimask_output=multimask, **prompt)
    ours = vitb.segment(
        emb, prompt["point_coords"], prompt["point_labels"], prompt["box"], multimask=multimask
    )
    assert ours[0].prompt == "points+box"
    for result in ours:
        slot = result.mask_index - 1 if multimask else 0
        assert result.predicted_iou == pytest.approx(float(ious[slot]), abs=1e-5)
        assert np.mean(result.mask != masks[slot]) < 1e-3
        valid = lows[slot][:48, :64]  # the unpadded part of the 64x64 low-res logits
        assert np.allclose(result.low_res_logits[0, :48, :64].numpy(), valid, atol=1e-4)


def test_litemedsam_box_matches_stock_and_refinement(lite: SamSegmenter, image: np.ndarray) -> None:
    emb = lite.embed(None, image)
    box = np.array([25.0, 15.0, 95.0, 65.0])
    (first,) = lite.segment(emb, box_xyxy=box)
    masks, _, _ = _stock(lite, image, box=box, multimask_output=False)
    assert np.mean(first.mask != masks[0]) < 1e-3
    (refined,) = lite.segment(emb, box_xyxy=box, mask_input=first.low_res_logits)
    stock_refined, ious, _ = _stock(
        lite, image, box=box, mask_input=first.low_res_logits.numpy(), multimask_output=False
    )
    assert refined.predicted_iou == pytest.approx(float(ious[0]), abs=1e-5)
    assert np.mean(refined.mask != stock_refined[0]) < 1e-3
    assert not torch.allclose(refined.low_res_logits, first.low_res_logits)


def test_batched_boxes_equal_one_by_one(lite: SamSegmenter, image: np.ndarray) -> None:
    emb = lite.embed(None, image)
    boxes = np.array([[0, 0, 60, 45], [25, 15, 95, 65], [70, 40, 120, 90]], dtype=np.float32)
    batched = lite.segment_boxes(emb, boxes)
    assert len(batched) == 3 and lite.segment_boxes(emb, np.zeros((0, 4))) == []
    for box, result in zip(boxes, batched, strict=True):
        (alone,) = lite.segment(emb, box_xyxy=box)
        assert result.prompt == "box" and result.prompt_box_xyxy == tuple(box.tolist())
        assert np.array_equal(result.mask, alone.mask)
        assert result.predicted_iou == pytest.approx(alone.predicted_iou, abs=1e-5)
        assert torch.allclose(result.low_res_logits, alone.low_res_logits, atol=1e-4)


def test_box_prompted_variant_turns_clicks_into_boxes(
    lite: SamSegmenter, image: np.ndarray
) -> None:
    emb = lite.embed(None, image)
    (default,) = lite.segment(emb, points_xy=[[60, 45]], point_labels=[1])
    side = min(HEIGHT, WIDTH) / 4
    assert default.prompt == "derived_box:default"
    assert default.prompt_box_xyxy == (60 - side / 2, 45 - side / 2, 60 + side / 2, 45 + side / 2)
    candidates = [[0, 0, 120, 90], [30, 20, 90, 60], [0, 0, 10, 10]]
    (detected,) = lite.segment(
        emb, points_xy=[[60, 45], [5, 5]], point_labels=[1, 0], candidate_boxes_xyxy=candidates
    )
    assert detected.prompt == "derived_box:detector"
    assert detected.prompt_box_xyxy == (30.0, 20.0, 90.0, 60.0)
    (boxed,) = lite.segment(emb, points_xy=[[60, 45]], point_labels=[1], box_xyxy=[1, 2, 50, 60])
    assert boxed.prompt == "box" and boxed.prompt_box_xyxy == (1.0, 2.0, 50.0, 60.0)
    with pytest.raises(ValueError, match="at least one positive point"):
        lite.segment(emb, points_xy=[[60, 45]], point_labels=[0])


def test_point_prompted_variant_uses_points(vitb: SamSegmenter, image: np.ndarray) -> None:
    emb = vitb.embed(None, image)
    (result,) = vitb.segment(emb, points_xy=[[60, 45]], point_labels=[1])
    assert result.prompt == "points" and result.prompt_box_xyxy is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "empty prompt"),
        ({"points_xy": [[10, 10]]}, "given together"),
        ({"points_xy": [[10, 10], [20, 20]], "point_labels": [1]}, r"shape \[2\]"),
        ({"points_xy": [[121, 10]], "point_labels": [1]}, "outside the image 120x90"),
        ({"points_xy": [[10, -1]], "point_labels": [1]}, "outside the image"),
        ({"points_xy": [[10, 10]], "point_labels": [2]}, "1 \\(positive\\) or 0"),
        ({"points_xy": [10, 10], "point_labels": [1]}, r"shape \[n, 2\]"),
        ({"points_xy": [[np.nan, 10]], "point_labels": [1]}, "finite"),
        ({"box_xyxy": [50, 10, 40, 20]}, "not a valid xyxy box"),
        ({"box_xyxy": [0, 0, 130, 20]}, "not a valid xyxy box inside the image 120x90"),
        ({"box_xyxy": [0, 0, 10]}, "4 numbers"),
        ({"box_xyxy": [0, 0, 10, 10], "mask_input": np.zeros((32, 32))}, "mask_input must be"),
    ],
)
def test_bad_prompts_raise_clear_errors(
    vitb: SamSegmenter, image: np.ndarray, kwargs: dict, message: str
) -> None:
    emb = vitb.embed(None, image)
    with pytest.raises(ValueError, match=message):
        vitb.segment(emb, **kwargs)


def test_bad_images_and_foreign_embeddings(
    lite: SamSegmenter, vitb: SamSegmenter, image: np.ndarray
) -> None:
    with pytest.raises(ValueError, match="uint8"):
        lite.embed(None, image.astype(np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        lite.embed(None, image[:, :, 0])
    with pytest.raises(ValueError, match="numpy array"):
        lite.embed(None, image.tolist())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model version"):
        lite.segment(vitb.embed(None, image), box_xyxy=[0, 0, 10, 10])
    with pytest.raises(ValueError, match="checkpoint not found"):
        SamSegmenter("litemedsam", "/no/such/lite_medsam.pth")
    with pytest.raises(ValueError, match="unknown SAM variant"):
        SamSegmenter("vit_z", tiny=True)


def test_second_click_does_not_reencode(image: np.ndarray) -> None:
    seg = tiny_models.tiny_sam("litemedsam")
    first = seg.embed("item-1", image)
    seg.segment(first, box_xyxy=[0, 0, 50, 50])
    again = seg.embed("item-1", image)
    seg.segment(again, box_xyxy=[10, 10, 60, 60])
    assert again is first
    assert seg.encoder_calls == 1 and seg.cache.stats()["hits"] == 1


def test_embed_many_batches_and_matches_single(image: np.ndarray) -> None:
    seg = tiny_models.tiny_sam("vit_b", batch_size=2)
    rng = np.random.default_rng(1)
    images = [image] + [
        rng.integers(0, 255, (40 + 10 * i, 70, 3), dtype=np.uint8) for i in range(3)
    ]
    many = seg.embed_many([*images, images[0]])
    assert seg.encoder_calls == 2 and seg.images_encoded == 4 and seg.cache.stats()["puts"] == 4
    assert many[0] is many[4]
    single = tiny_models.tiny_sam("vit_b", batch_size=2)
    for img, emb in zip(images, many, strict=False):
        alone = single.embed(None, img)
        assert alone.input_size_hw == emb.input_size_hw
        assert torch.allclose(alone.features, emb.features, atol=1e-5)
    assert seg.embed_many(images)[1] is many[1] and seg.encoder_calls == 2


def test_from_spec_reads_params_and_rejects_unknown_ones(tmp_path: Path) -> None:
    params = {"variant": "vit_t", "tiny": True, "seed": 2, "cache_dir": str(tmp_path)}
    spec = ModelSpec(name="sam-test", family="sam", params=params)
    seg = SamSegmenter.from_spec(spec, tmp_path, device="cpu")
    assert seg.name == "sam-test" and seg.accepts_point_prompts
    assert seg.version.startswith("sam-test-noweights-")
    seg.embed("img", np.zeros((20, 30, 3), dtype=np.uint8))
    assert seg.cache.stats()["disk_writes"] == 1
    bad = ModelSpec(name="sam-test", family="sam", params={"variant": "vit_t", "colour": "red"})
    with pytest.raises(ValueError, match="unknown param"):
        SamSegmenter.from_spec(bad, tmp_path, device="cpu")
