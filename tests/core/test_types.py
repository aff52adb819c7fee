from __future__ import annotations

import numpy as np
import pytest

from engine.types import Box, Feedback, Item, Mask, Prediction, Span, Suggestion, region_from_dict


def _suggestion(score: float = 0.5) -> Suggestion:
    return Suggestion("bus", score, Box(0, 0, 10, 10), "yolo", "v1")


@pytest.mark.parametrize(
    ("coords", "message"),
    [
        ((-1, 0, 5, 5), "x1 must be >= 0"),
        ((5, 0, 1, 5), "x1 <= x2"),
        ((0, 0, float("nan"), 5), "finite"),
    ],
)
def test_bad_box_is_refused_with_a_clear_message(coords: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Box(*coords)


def test_span_past_the_end_of_the_text_is_refused() -> None:
    span = Span(3, 9)
    with pytest.raises(ValueError, match="past the end"):
        span.check_within("short")
    with pytest.raises(ValueError, match="start < end"):
        Span(4, 4)


def test_regions_round_trip_through_dicts() -> None:
    box = Box(1, 2, 30, 40)
    mask = Mask("PPYo0", 50, 60, box)
    span = Span(0, 5, "hello")
    for region in (box, mask, span):
        assert region_from_dict(region.to_dict()) == region
    with pytest.raises(ValueError, match="unknown region kind"):
        region_from_dict({"kind": "circle"})


def test_suggestion_score_must_be_in_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _suggestion(1.5)


def test_prediction_probs_align_with_suggestions() -> None:
    ok = Prediction("a", "yolo", "v1", (_suggestion(),), np.array([[0.2, 0.8]]), ("x", "y"))
    assert ok.probs.dtype == np.float32
    assert ok.max_class_prob == pytest.approx(0.8)
    with pytest.raises(ValueError, match="rows"):
        Prediction("a", "yolo", "v1", (), np.array([[0.2, 0.8]]), ("x", "y"))
    with pytest.raises(ValueError, match="finite"):
        Prediction("a", "yolo", "v1", (_suggestion(),), np.array([[np.nan, 0.8]]), ("x", "y"))
    empty = Prediction("a", "yolo", "v1", (), np.zeros((0, 2)), ("x", "y"))
    assert empty.max_class_prob == 0.0


def test_item_and_feedback_validation() -> None:
    with pytest.raises(ValueError, match="needs a uri"):
        Item("a", "image")
    with pytest.raises(ValueError, match="kind must be"):
        Item("a", "video", uri="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="action"):
        Feedback("a", "approve", "k")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="edit feedback needs"):
        Feedback("a", "edit", "k")
