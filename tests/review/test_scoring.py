from __future__ import annotations

import numpy as np
import pytest

from engine.review.scoring import image_score
from engine.types import Box, Prediction, Suggestion


def _detections(confidences: list[float], n_classes: int = 4) -> Prediction:
    probs = np.full((len(confidences), n_classes), 0.001, dtype=np.float32)
    probs[:, 0] = confidences
    suggestions = tuple(Suggestion("cat", c, Box(0, 0, 5, 5), "y", "v") for c in confidences)
    return Prediction("a", "y", "v", suggestions, probs, tuple(f"c{i}" for i in range(n_classes)))


def test_confident_images_rank_below_unsure_ones_and_empty_ones_first() -> None:
    confident = image_score(_detections([0.97, 0.95]))
    unsure = image_score(_detections([0.55, 0.9]))
    nothing_shown = image_score(_detections([0.2, 0.05]))
    empty = image_score(Prediction("a", "y", "v", (), np.zeros((0, 4)), ("a", "b", "c", "d")))
    assert 0.0 <= confident < unsure <= 1.0
    assert nothing_shown > confident  # sub-threshold candidates are not "certain"
    assert empty == 1.0


def test_masks_score_from_their_quality_heads() -> None:
    def mask_prediction(iou: float, stability: float) -> Prediction:
        s = Suggestion(
            "cup",
            iou,
            Box(0, 0, 5, 5),
            "sam",
            "v",
            attributes={"predicted_iou": iou, "stability_score": stability},
        )
        return Prediction("a", "sam", "v", (s,), np.zeros((1, 0)))

    assert image_score(mask_prediction(0.95, 0.97)) < image_score(mask_prediction(0.95, 0.6))
    assert image_score(mask_prediction(0.95, 0.6)) == 0.4


def test_a_classifier_row_is_scored_over_the_projects_choices() -> None:
    """A sure cat split over three cat classes is sure once summed into "Cat"."""
    names = ("tabby", "tiger cat", "Egyptian cat", "beagle", "cup")
    row = np.array([[0.38, 0.27, 0.22, 0.08, 0.05]], dtype=np.float32)
    suggestion = Suggestion("tabby", 0.38, None, "cls", "v")
    raw = Prediction("a", "cls", "v", (suggestion,), row, names)
    grouped = Prediction(
        "a", "cls", "v", (suggestion,), row, names,
        signals={"class_groups": np.array([0, 0, 0, 1, -1], dtype=np.int32)},
    )  # fmt: skip
    assert image_score(raw) == pytest.approx(1 - (0.38 - 0.27))  # margin on the model's row
    assert image_score(grouped) == pytest.approx(1 - (0.87 - 0.08))  # Cat 0.87 vs Dog 0.08
