from __future__ import annotations

import numpy as np

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
