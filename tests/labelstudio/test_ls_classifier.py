"""Label Studio image projects labeled as a whole (``<Choices>``, no shape control): served
by the classifier (``default_classifier``), on a tiny random EfficientNet-Lite0 and on the
real ImageNet weights (slow); the annotation comes back through the webhook as a decision.

The real-weight test needs the weights (`labelengine models pull efficientnet-lite0`): it
fails when they are missing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ml_backend import (
    BASIC,
    backend,
    clear_label_studio_env,
    counts,
    image_task,
    image_tasks,
    item_id_of,
    predict,
    setup,
    spacy_tagger,
    suggestion_of,
    tiny_detector,
    webhook_event,
)
from PIL import Image
from tiny_models import tiny_classifier

from engine.config import Settings
from engine.labelstudio.models import ModelHolder
from engine.serving.app import create_app
from engine.store import Store

CATS = "cat,tabby,tiger cat,Persian cat,Siamese cat,Egyptian cat"  # ImageNet 281-285
CHOICES = f"""<View>
  <Image name="image" value="$image"/>
  <Choices name="kind" toName="image" choice="single">
    <Choice value="Cat" predicted_values="{CATS}"/>
    <Choice value="Dog" predicted_values="dog"/>
    <Choice value="Coffee" predicted_values="cup,espresso,coffee mug"/>
  </Choices>
</View>"""
WITH_BOXES = CHOICES.replace(
    "</View>",
    '<RectangleLabels name="box" toName="image"><Label value="Animal" predicted_values="cat"/>'
    "</RectangleLabels></View>",
)


@pytest.fixture(autouse=True)
def no_label_studio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_label_studio_env(monkeypatch)


@pytest.fixture
def models(settings: Settings) -> ModelHolder:
    return ModelHolder(
        settings,
        detector=tiny_detector(),
        build=lambda name: spacy_tagger(),
        classifier=tiny_classifier(winner=0),  # every image: "cat"
    )


@pytest.fixture
def client(settings: Settings, store: Store, models: ModelHolder) -> Iterator[TestClient]:
    with backend(settings, store, models) as test_client:
        yield test_client


def test_a_choices_config_is_served_by_the_classifier(
    client: TestClient, store: Store, models: ModelHolder, tmp_path: Path
) -> None:
    classifier = tiny_classifier(winner=0)
    version = setup(client, CHOICES)
    assert version == classifier.version
    tasks = image_tasks(tmp_path, [(48, 64), (80, 30)])
    outs = predict(client, tasks, CHOICES)
    for task, out in zip(tasks, outs, strict=True):
        assert out["model_version"] == version
        [result] = out["result"]
        assert result["type"] == "choices" and result["value"] == {"choices": ["Cat"]}
        assert (result["from_name"], result["to_name"]) == ("kind", "image")
        record = suggestion_of(store, item_id_of(task), version, result["id"])
        assert record.suggestion.region is None and record.suggestion.label == "cat"
        assert result["score"] == pytest.approx(record.suggestion.score)
        assert out["score"] == pytest.approx(store.prediction_score(item_id_of(task), version))
        stored = store.stored_prediction(item_id_of(task))
        assert stored is not None
        names, groups = stored.prediction.class_names, stored.prediction.signals["class_groups"]
        assert dict(zip(names, groups.tolist(), strict=True)) == {"cat": 0, "dog": 1, "cup": 2}
    assert models.loaded()["classifier"] == version
    versions = client.get("/versions", headers=BASIC).json()["versions"]
    assert version in versions and tiny_detector().version in versions


def test_choices_beside_a_shape_control_stay_with_the_detector(client: TestClient) -> None:
    assert setup(client, WITH_BOXES) == tiny_detector().version


def test_an_annotation_keeping_the_choice_accepts_it_and_a_changed_one_replaces_it(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    kept_task, changed_task = image_tasks(tmp_path, [(48, 64), (40, 40)])
    kept_out, changed_out = predict(client, [kept_task, changed_task], CHOICES)
    kept = webhook_event(
        "ANNOTATION_CREATED", 40, kept_out["result"], config=CHOICES, data=kept_task["data"]
    )
    assert counts(client.post("/webhook", json=kept, headers=BASIC).json())[:3] == (1, 0, 0)
    labels = store.item_labels(store.get_item(item_id_of(kept_task))).labels
    assert [(lab.label, lab.region, lab.source) for lab in labels] == [("cat", None, "accepted")]

    results = copy.deepcopy(changed_out["result"])
    results[0]["value"]["choices"] = ["Coffee"]
    event = webhook_event(
        "ANNOTATION_CREATED", 41, results, config=CHOICES, data=changed_task["data"]
    )
    body = client.post("/webhook", json=event, headers=BASIC).json()
    # whole-item classes match by label (annotation_feedback): the model's class is
    # rejected and the annotator's is an item-level class of its own
    assert counts(body)[:5] == (0, 0, 1, 0, 1)
    labels = store.item_labels(store.get_item(item_id_of(changed_task))).labels
    assert [(lab.label, lab.region, lab.source) for lab in labels] == [("Coffee", None, "feedback")]


@pytest.mark.slow
def test_real_efficientnet_lite0_tells_the_cat_from_the_coffee(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    import skimage.data

    weights = (
        settings.resolved_models_dir / "efficientnet-lite0" / "efficientnet-lite0-57934424.pth"
    )
    if not weights.is_file():
        pytest.fail(
            f"real weights not found at {weights} (labelengine models pull efficientnet-lite0)"
        )
    tasks = []
    for n, image in enumerate((skimage.data.chelsea(), skimage.data.coffee()), start=1):
        path = tmp_path / f"photo{n}.png"
        Image.fromarray(image).save(path)
        tasks.append(image_task(n, str(path)))
    with TestClient(create_app(settings, store, models=ModelHolder(settings))) as http:
        version = setup(http, CHOICES)
        assert version.startswith("efficientnet-lite0-")
        cat, coffee = predict(http, tasks, CHOICES)
    assert [r["value"]["choices"] for r in cat["result"]] == [["Cat"]]
    assert [r["value"]["choices"] for r in coffee["result"]] == [["Coffee"]]
    assert cat["model_version"] == coffee["model_version"] == version
