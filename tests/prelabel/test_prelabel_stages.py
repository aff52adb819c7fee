"""The pre-label job's stages, called directly: decode (bad files become error rows)
and the predictor (errors passed through, a bad input isolated)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.config import ModelSpec
from engine.prelabel.codec import decode_prediction, objects
from engine.prelabel.stages import Predictor, decode_batch
from engine.review.scoring import image_score
from engine.types import Item


def test_decode_batch_turns_each_bad_file_into_an_error_row(tmp_path: Path) -> None:
    good = tmp_path / "ok" / "img00.png"
    good.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (52, 71, 3), np.uint8)).save(good)
    jpeg = tmp_path / "full.jpg"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(jpeg)
    (tmp_path / "trunc.jpg").write_bytes(jpeg.read_bytes()[:200])
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image", encoding="utf-8")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    outside.write_bytes(good.read_bytes())
    uris = [
        str(good),
        *(str(tmp_path / n) for n in ("trunc.jpg", "zero.jpg", "text.jpg")),
        str(outside),
        str(tmp_path / "missing.png"),
    ]
    batch = {"item_id": objects([f"i{k}" for k in range(len(uris))]), "uri": objects(uris)}
    out = decode_batch(batch, roots=[str(tmp_path)], max_pixels=10**6, max_file_bytes=10**6)
    assert list(out["item_id"]) == list(batch["item_id"])
    assert out["error"][0] == "" and out["image"][0].shape == np.asarray(Image.open(good)).shape
    assert all(out["error"][1:]) and all(img.size == 0 for img in out["image"][1:])
    assert "ImageDecodeError" in out["error"][1] and "0 bytes" in out["error"][2]
    assert "outside the data roots" in out["error"][4] and "no such file" in out["error"][5]
    small = decode_batch(batch, roots=[str(tmp_path)], max_pixels=100, max_file_bytes=10**6)
    assert "max_pixels" in small["error"][0]


def test_predictor_passes_errors_through_and_isolates_a_bad_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # what the actor sets; restored after
    spec = ModelSpec.model_validate(
        {
            "name": "tiny",
            "family": "yolo",
            "params": {"arch_yaml": "yolo11n.yaml", "imgsz_px": 64, "max_det": 5},
        }
    )
    predictor = Predictor(
        spec.model_dump(mode="json"), "/nonexistent", device="cpu", torch_threads=1
    )
    rng = np.random.default_rng(1)
    images = [
        rng.integers(0, 256, (40, 50, 3), dtype=np.uint8),
        np.zeros((0, 0, 3), np.uint8),  # a decode error row
        np.zeros((30, 30), np.uint8),  # not HxWx3: the model rejects it
        rng.integers(0, 256, (64, 32, 3), dtype=np.uint8),
    ]
    batch = {
        "item_id": objects(["a", "b", "c", "d"]),
        "uri": objects(["/a", "/b", "/c", "/d"]),
        "image": objects(images),
        "error": objects(["", "ImageDecodeError: bad", "", ""]),
    }
    out = predictor(batch)
    assert list(out["item_id"]) == ["a", "b", "c", "d"]
    assert out["error"][1] == "ImageDecodeError: bad"
    assert "ValueError" in out["error"][2] and out["meta"][2] == ""
    expected = predictor.model.predict([Item(item_id="a", kind="image", uri="/a")], [images[0]])[0]
    for k, item_id in ((0, "a"), (3, "d")):
        assert out["error"][k] == ""
        prediction = decode_prediction(out["meta"][k], out["probs"][k], out["extras"][k])
        assert prediction.item_id == item_id and prediction.model_name == "tiny"
        assert out["score"][k] == pytest.approx(image_score(prediction))
    got = decode_prediction(out["meta"][0], out["probs"][0], out["extras"][0])
    assert got.suggestions == expected.suggestions
    np.testing.assert_allclose(got.probs, expected.probs, rtol=1e-5, atol=1e-6)
