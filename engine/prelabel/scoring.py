"""One queue score per prediction (higher = label first), by the sampling policies.

- Detections (``probs`` holds per-class sigmoid rows): ``engine.sampling``'s
  detection policy — region score ``max_c binary_entropy(p_c)``, item score
  the max over boxes shown at ``DISPLAY_THRESHOLD``; an image where nothing
  passed is scored from its best sub-threshold candidates; no box at all is
  the blind spot and scores 1.0 (label it first).
- Masks (suggestions carry ``predicted_iou`` / ``stability_score``): the mask
  policy, ``1 - min(iou, stability)`` maxed over masks.
- Anything else: ``1 - max class probability`` (1.0 when nothing was found).
"""

from __future__ import annotations

import numpy as np

from engine.sampling.policies import (
    detection_item_scores,
    detection_region_scores,
    mask_item_scores,
)
from engine.types import Prediction

DISPLAY_THRESHOLD = 0.25


def item_score(prediction: Prediction) -> float:
    """The item's queue score in [0, 1]."""
    n = len(prediction.suggestions)
    if n and prediction.probs.shape[1]:
        confidences = np.array([s.score for s in prediction.suggestions])
        scores = detection_item_scores(
            detection_region_scores(prediction.probs),
            confidences,
            np.zeros(n, dtype=np.intp),
            1,
            display_threshold=DISPLAY_THRESHOLD,
        )
        return float(scores[0])
    attributes = [s.attributes for s in prediction.suggestions]
    if n and all("predicted_iou" in a and "stability_score" in a for a in attributes):
        scores = mask_item_scores(
            [float(a["predicted_iou"]) for a in attributes],
            [float(a["stability_score"]) for a in attributes],
            np.zeros(n, dtype=np.intp),
            1,
        )
        return float(scores[0])
    if not n:
        return 1.0
    return min(max(1.0 - prediction.max_class_prob, 0.0), 1.0)
