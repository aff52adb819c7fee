"""SamSegmenter.predict: detector boxes in, Mask suggestions out (tiny random SAM)."""

from __future__ import annotations

import numpy as np
import pytest
import tiny_models

from engine.imaging.masks import decode_rle
from engine.models.base import Model
from engine.models.sam.batch import BoxPrompts
from engine.models.sam.segmenter import SamSegmenter
from engine.types import Item, Mask


@pytest.fixture(scope="module")
def seg(tiny_sam: SamSegmenter) -> SamSegmenter:
    """The shared tiny random LiteMedSAM (tests/conftest.py)."""
    return tiny_sam


def _image(seed: int, height: int = 60, width: int = 80) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def _item(item_id: str) -> Item:
    return Item(item_id, "image", uri=f"file:///{item_id}.png")


def test_predict_gives_one_mask_suggestion_per_box(seg: SamSegmenter) -> None:
    assert isinstance(seg, Model)
    image = _image(0)
    boxes = np.array([[0, 0, 40, 30], [10, 5, 80, 60]], dtype=np.float32)
    (pred,) = seg.predict([_item("a")], [BoxPrompts(image, boxes, ["cat", "dog"])])
    assert pred.item_id == "a" and pred.model_name == "sam-tiny"
    assert pred.model_version == seg.version and pred.probs.shape == (2, 0)
    assert pred.embedding is not None and pred.embedding.shape == (32,)
    assert set(pred.timings_ms) >= {"preprocess_ms", "forward_ms", "postprocess_ms"}
    expected = seg.segment_boxes(seg.embed(None, image), boxes)
    for index, (sug, label) in enumerate(zip(pred.suggestions, ["cat", "dog"], strict=True)):
        assert sug.label == label and sug.parent_index == index
        assert isinstance(sug.region, Mask)
        mask = decode_rle(sug.region.mask_rle, sug.region.height_px, sug.region.width_px)
        assert np.array_equal(mask, expected[index].mask)
        attrs = sug.attributes
        assert attrs["parent_box_index"] == index
        assert attrs["predicted_iou"] == pytest.approx(expected[index].predicted_iou)
        assert sug.score == pytest.approx(min(max(attrs["predicted_iou"], 0.0), 1.0))
        assert attrs["stability_score"] == pytest.approx(expected[index].stability_score)
        assert attrs["prompt_box_xyxy"] == boxes[index].tolist()


def test_predict_batches_items_and_accepts_tuples(seg: SamSegmenter) -> None:
    fresh = tiny_models.tiny_sam("litemedsam", batch_size=8)
    items = [_item("a"), _item("b"), _item("c")]
    inputs = [
        (_image(1), [[0, 0, 20, 20]]),
        (_image(2, 50, 50), np.zeros((0, 4))),
        (_image(3), [[5, 5, 30, 30], [0, 0, 80, 60]], ["x", "y"]),
    ]
    preds = fresh.predict(items, inputs)
    assert fresh.encoder_calls == 1 and fresh.images_encoded == 3
    assert [len(p.suggestions) for p in preds] == [1, 0, 2]
    assert preds[0].suggestions[0].label == "object" and preds[2].suggestions[1].label == "y"
    assert preds[1].probs.shape == (0, 0)
    image, boxes = _image(1), [[0, 0, 20, 20]]
    again = fresh.predict_with_boxes(items[:1], [image], [boxes])
    assert fresh.encoder_calls == 1
    assert again[0].suggestions[0].region == preds[0].suggestions[0].region


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (None, "needs inputs"),
        ([_image(0)], "must be BoxPrompts or"),
        ([(_image(0), [[0, 0, 90, 10]])], "item 'a': box 0"),
        ([(_image(0), [[0, 0, 10, 10]], ["a", "b"])], "2 labels for 1 boxes"),
        ([(_image(0).astype(np.int32), [[0, 0, 10, 10]])], "uint8"),
    ],
)
def test_predict_rejects_bad_inputs(seg: SamSegmenter, inputs: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        seg.predict([_item("a")], inputs)  # type: ignore[arg-type]
