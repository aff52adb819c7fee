"""Label Studio configs and conversions, cross-checked with the Label Studio SDK."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface

from engine.imaging.masks import decode_rle, mask_iou, mask_to_region
from engine.labelstudio.results import (
    parse_labeling_config,
    results_to_regions,
    suggestion_id_of,
    suggestion_to_results,
    task_score,
    to_ls_prediction,
)
from engine.types import Box, Mask, Span, Suggestion

IMAGE_CONFIG = """
<View>
  <Header value="Label every vehicle and pedestrian"/>
  <Image name="image" value="$image" zoom="true" zoomControl="true" rotateControl="true"/>
  <RectangleLabels name="label" toName="image" strokeWidth="3">
    <Label value="Car" background="green" predicted_values="car,truck,bus"/>
    <Label value="Pedestrian" alias="PED" background="blue" predicted_values="person"/>
  </RectangleLabels>
  <BrushLabels name="tag" toName="image">
    <Label value="Car" background="rgba(255, 0, 0, 0.7)" predicted_values="car"/>
    <Label value="Road" background="rgba(0, 0, 255, 0.7)"/>
  </BrushLabels>
  <KeyPointLabels name="kp-1" toName="image">
    <Label value="Face" background="red"/>
  </KeyPointLabels>
  <View style="display: flex">
    <Choices name="weather" toName="image" choice="single-radio">
      <View><Choice value="Sunny"/><Choice value="Rain" predicted_values="rainy"/></View>
    </Choices>
  </View>
  <TextArea name="notes" toName="image" editable="true"/>
</View>
"""

TEXT_CONFIG = """
<View>
  <Labels name="ner" toName="text">
    <Label value="PER" predicted_values="B-PER,I-PER,person"/>
    <Label value="ORG" background="darkorange"/>
  </Labels>
  <Text name="text" value="$text" granularity="word"/>
</View>
"""
TEXT = "Ada Lovelace met Charles Babbage in London."


def _disk(height: int, width: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def test_image_config_parses_like_the_sdk() -> None:
    config = parse_labeling_config(IMAGE_CONFIG)
    sdk = LabelInterface(IMAGE_CONFIG)
    assert [c.name for c in config.controls] == ["label", "tag", "kp-1", "weather"]
    for control in config.controls:
        sdk_control = sdk.get_control(control.name)
        assert sdk_control.to_name == [control.to_name]
        assert [lb.result_value for lb in control.labels] == sdk_control.labels
    assert config.object_for("image") is not None
    assert config.object_for("image").data_key == "image"  # type: ignore[union-attr]
    assert config.object_for("text") is None
    rect = config.control("label")
    assert rect.result_type == "rectanglelabels"
    assert rect.label_for("TRUCK").value == "Car"  # type: ignore[union-attr]
    pedestrian = rect.label_for("person")
    assert pedestrian is not None and pedestrian.value == "Pedestrian"
    assert pedestrian.result_value == "PED"  # Label Studio writes the alias
    assert rect.label_for("ped") is pedestrian and rect.label_of_result("PED") is pedestrian
    assert rect.label_for("dog") is None
    assert config.control("weather").label_for("rainy").value == "Rain"  # type: ignore[union-attr]


def test_text_config_parses_labels_on_text() -> None:
    config = parse_labeling_config(TEXT_CONFIG)
    (control,) = config.controls
    assert (control.tag, control.name, control.to_name) == ("Labels", "ner", "text")
    assert control.target.data_key == "text" and control.target.kind == "text"
    assert control.label_for("B-PER").value == "PER"  # type: ignore[union-attr]
    assert LabelInterface(TEXT_CONFIG).get_control("ner").labels == ["PER", "ORG"]


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("", "empty"),
        ("<View><Image name='i' value='$i'/>", "not well-formed"),
        (
            '<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaa">]><View>&a;</View>',
            "DTD",
        ),
        ("<Panel><Image name='i' value='$i'/></Panel>", "root must be <View>"),
        ("<View><Image name='i' value='$i'/><TextArea name='t' toName='i'/></View>", "TextArea"),
        ("<View><Image name='i' value='image'/></View>", 'value="\\$key"'),
        ("<View><Image value='$i'/></View>", "no name"),
        (
            "<View><Image name='i' value='$i'/><RectangleLabels name='r'><Label value='a'/>"
            "</RectangleLabels></View>",
            "no toName",
        ),
        (
            "<View><Image name='i' value='$i'/><RectangleLabels name='r' toName='img'>"
            "<Label value='a'/></RectangleLabels></View>",
            'toName="img"',
        ),
        (
            "<View><Image name='i' value='$i'/><RectangleLabels name='r' toName='i'/></View>",
            "no <Label",
        ),
        (
            "<View><Text name='t' value='$t'/><RectangleLabels name='r' toName='t'>"
            "<Label value='a'/></RectangleLabels></View>",
            "no control the engine can serve",
        ),
    ],
)
def test_configs_the_engine_cannot_serve_say_why(xml: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_labeling_config(xml)


def test_external_entities_are_refused() -> None:
    xml = '<!DOCTYPE v [<!ENTITY x SYSTEM "file:///etc/passwd">]><View>&x;</View>'
    with pytest.raises(ValueError, match="DTD"):
        parse_labeling_config(xml)


def test_box_percent_round_trip_and_sdk_validation() -> None:
    config = parse_labeling_config(IMAGE_CONFIG)
    box = Box(12.5, 40.0, 300.25, 199.0)
    suggestion = Suggestion("truck", 0.8, box, "yolo", "v1")
    (result,) = suggestion_to_results(suggestion, config, image_size_px=(640, 480), result_id="s7")
    value = result["value"]
    assert result["type"] == "rectanglelabels" and value["rectanglelabels"] == ["Car"]
    assert value["x"] == pytest.approx(12.5 / 640 * 100)
    assert value["height"] == pytest.approx((199.0 - 40.0) / 480 * 100)
    assert (result["original_width"], result["original_height"]) == (640, 480)
    assert LabelInterface(IMAGE_CONFIG).validate_prediction({"result": [result]})
    (back,) = results_to_regions([result], config)
    assert back.label == "Car" and back.suggestion_id == 7
    person = Suggestion("person", 0.5, box, "yolo", "v1")
    (aliased,) = suggestion_to_results(person, config, image_size_px=(640, 480))
    assert aliased["value"]["rectanglelabels"] == ["PED"]
    assert LabelInterface(IMAGE_CONFIG).validate_prediction({"result": [aliased]})
    assert isinstance(back.region, Box)
    assert back.region.box_xyxy == pytest.approx(box.box_xyxy, abs=1e-9)


def test_mask_becomes_brush_and_comes_back_identical() -> None:
    config = parse_labeling_config(IMAGE_CONFIG)
    pixels = _disk(90, 120, 40, 60, 25) & ~_disk(90, 120, 40, 60, 8)
    suggestion = Suggestion("car", 0.7, mask_to_region(pixels), "sam", "v1")
    results = suggestion_to_results(suggestion, config, result_id="s3")
    assert [r["type"] for r in results] == ["brushlabels"]
    assert LabelInterface(IMAGE_CONFIG).validate_prediction({"result": results})
    (back,) = results_to_regions(results, config)
    assert isinstance(back.region, Mask)
    np.testing.assert_array_equal(decode_rle(back.region.mask_rle, 90, 120), pixels)


def test_mask_becomes_polygon_parts_that_rasterise_back() -> None:
    xml = (
        "<View><Image name='img' value='$url'/><PolygonLabels name='poly' toName='img'>"
        "<Label value='Cell' predicted_values='cell'/></PolygonLabels></View>"
    )
    config = parse_labeling_config(xml)
    pixels = _disk(100, 100, 30, 30, 15) | _disk(100, 100, 70, 70, 10)
    suggestion = Suggestion("cell", 0.9, mask_to_region(pixels), "sam", "v1")
    results = suggestion_to_results(suggestion, config, result_id="s5", simplify_px=0.0)
    assert [r["id"] for r in results] == ["s5", "s5.1"]
    assert LabelInterface(xml).validate_prediction({"result": results})
    assert all(0 <= x <= 100 and 0 <= y <= 100 for r in results for x, y in r["value"]["points"])
    union = np.zeros((100, 100), bool)
    for region in results_to_regions(results, config):
        assert isinstance(region.region, Mask) and region.suggestion_id == 5
        union |= decode_rle(region.region.mask_rle, 100, 100)
    assert mask_iou(union, pixels) == 1.0


def test_span_and_choices_and_unmapped_classes() -> None:
    config = parse_labeling_config(TEXT_CONFIG)
    person = Suggestion("B-PER", 0.9, Span(0, 12), "ner", "v1")
    other = Suggestion("LOC", 0.9, Span(35, 41), "ner", "v1")
    prediction = to_ls_prediction(
        [person, other], config, model_version="v1", item_score=0.25, text=TEXT
    )
    (result,) = prediction["result"]
    assert result["value"] == {"start": 0, "end": 12, "labels": ["PER"], "text": "Ada Lovelace"}
    assert prediction["score"] == 0.25 and prediction["model_version"] == "v1"
    assert LabelInterface(TEXT_CONFIG).validate_prediction(prediction)
    (back,) = results_to_regions(prediction["result"], config, text=TEXT)
    assert back.region == Span(0, 12, "Ada Lovelace") and back.label == "PER"

    image_config = parse_labeling_config(IMAGE_CONFIG)
    whole = [Suggestion(c, 0.6, None, "clf", "v1") for c in ("sunny", "rainy", "snow")]
    (choice,) = to_ls_prediction(whole, image_config, model_version="v1")["result"]
    assert choice["value"] == {"choices": ["Sunny", "Rain"]}


def test_annotation_results_back_to_pixels() -> None:
    config = parse_labeling_config(IMAGE_CONFIG)
    size = {"original_width": 200, "original_height": 100}
    results: list[dict[str, Any]] = [
        {"id": "a1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
         **size, "value": {"x": 50, "y": 10, "width": 10, "height": 20, "rotation": 90,
                           "rectanglelabels": ["PED"]}},
        {"id": "a2", "from_name": "kp-1", "to_name": "image", "type": "keypointlabels",
         **size, "value": {"x": 25, "y": 50, "width": 0.5, "keypointlabels": ["Face"]}},
        {"id": "a3", "from_name": "notes", "to_name": "image", "type": "textarea",
         "value": {"text": ["fine"]}},
        {"id": "a4", "from_name": "weather", "to_name": "image", "type": "choices",
         "value": {"choices": ["Rain"]}},
    ]  # fmt: skip
    rect, point, choice = results_to_regions(results, config)
    # 20 x 20 px box turned 90 degrees clockwise about its top-left corner (100, 10)
    assert isinstance(rect.region, Box) and rect.label == "Pedestrian"  # alias -> value
    assert rect.region.box_xyxy == pytest.approx((80.0, 10.0, 100.0, 30.0))
    assert point.region == Box(50.0, 50.0, 50.0, 50.0) and point.label == "Face"
    assert choice.region is None and choice.label == "Rain" and choice.suggestion_id is None


def test_bad_results_and_inputs_are_value_errors() -> None:
    config = parse_labeling_config(IMAGE_CONFIG)
    value = {"x": 1, "y": 1, "width": 1, "height": 1, "rectanglelabels": ["Car"]}
    rect: dict[str, Any] = {"id": "x", "from_name": "label", "type": "rectanglelabels"}
    rect["value"] = value
    with pytest.raises(ValueError, match="original_width"):
        results_to_regions([rect], config)
    with pytest.raises(ValueError, match="not defined"):
        bad_label = {**rect, "original_width": 10, "original_height": 10}
        bad_label["value"] = {**value, "rectanglelabels": ["Truck"]}
        results_to_regions([bad_label], config)
    with pytest.raises(ValueError, match="no control named"):
        results_to_regions([{**rect, "from_name": "nope"}], config)
    box = Suggestion("car", 0.5, Box(0, 0, 5, 5), "yolo", "v1")
    with pytest.raises(ValueError, match="image size"):
        suggestion_to_results(box, config)
    with pytest.raises(ValueError, match="outside"):
        suggestion_to_results(box, config, image_size_px=(4, 4))
    with pytest.raises(ValueError, match="finite"):
        task_score(float("nan"))


def test_region_ids_and_task_score() -> None:
    assert suggestion_id_of("s42") == 42 and suggestion_id_of("s42.3") == 42
    assert suggestion_id_of("Xa9f") is None and suggestion_id_of(None) is None
    assert task_score(None) == 0.0 and task_score(0.9) > task_score(0.1)
