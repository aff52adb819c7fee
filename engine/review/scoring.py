"""One queue score per image prediction (higher = label first), by the sampling policies.

A suggestion is a *mask* when its attributes carry ``predicted_iou`` and
``stability_score`` (a segmenter's quality heads); every other suggestion is
a *detection*.

- Detections (``probs`` holds per-class sigmoid rows): ``engine.sampling``'s
  detection policy — region score ``max_c binary_entropy(p_c)``, item score
  the max over boxes shown at ``DISPLAY_THRESHOLD``; an image where nothing
  passed is scored from its best sub-threshold candidates; no box at all is
  the blind spot and scores 1.0 (label it first).
- Masks: the mask policy, ``1 - min(iou, stability)`` maxed over masks.
- Detector -> segmenter chains (both kinds in one prediction): the **max** of
  the detection score and the mask score. Either can make an image worth a
  look: a sure box whose mask is unstable still needs a human for the
  outline, and a good mask does not make a doubtful box certain. Without any
  mask (no box reached ``mask_min_box_score``) it is the detection score.
- Anything else: ``1 - max class probability`` (1.0 when nothing was found).

Text predictions are scored by ``engine.models.ner.uncertainty.text_item_score``.
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
    suggestions = prediction.suggestions
    if not suggestions:
        return 1.0
    masks = [
        i
        for i, s in enumerate(suggestions)
        if "predicted_iou" in s.attributes and "stability_score" in s.attributes
    ]
    mask_set = set(masks)
    boxes = [i for i in range(len(suggestions)) if i not in mask_set]
    scores = []
    if boxes and prediction.probs.shape[1]:
        scores.append(_detection_score(prediction, boxes))
    if masks:
        scores.append(_mask_score(prediction, masks))
    if scores:
        return max(scores)
    return min(max(1.0 - prediction.max_class_prob, 0.0), 1.0)


def _detection_score(prediction: Prediction, rows: list[int]) -> float:
    confidences = np.array([prediction.suggestions[i].score for i in rows])
    scores = detection_item_scores(
        detection_region_scores(prediction.probs[rows]),
        confidences,
        np.zeros(len(rows), dtype=np.intp),
        1,
        display_threshold=DISPLAY_THRESHOLD,
    )
    return float(scores[0])


def _mask_score(prediction: Prediction, rows: list[int]) -> float:
    attributes = [prediction.suggestions[i].attributes for i in rows]
    scores = mask_item_scores(
        [float(a["predicted_iou"]) for a in attributes],
        [float(a["stability_score"]) for a in attributes],
        np.zeros(len(rows), dtype=np.intp),
        1,
    )
    return float(scores[0])
