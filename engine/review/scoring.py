"""One queue score per prediction (higher = label first): ``queue_score``.

Every score is in [0, 1] and comes from ``engine.sampling``'s rules under a
``RankPolicy`` (``engine.sampling.policy``; the default policy gives the rules
below). The pre-label job, Label Studio's ``/predict`` and re-ranking
(``engine.review.ranking``) call ``queue_score(prediction, kind, policy)`` and
nothing else. ``DISPLAY_THRESHOLD`` is the confidence under which an editor
is not shown a suggestion (and the detection policy reasons about what was
shown).

**Images** (``image_score``). A suggestion is a *mask* when its attributes
carry ``predicted_iou`` and ``stability_score`` (a segmenter's quality heads),
a *class* when it has no region (a whole-image classifier), else a *detection*.

- Detections: region score from the class row (``probs`` holds per-class
  sigmoid rows) by ``policy.score``: ``auto`` = ``max_c binary_entropy(p_c)``;
  ``least_confidence`` / ``margin`` / ``entropy`` on the row renormalised;
  ``bald`` on the test-time-augmented rows (``signals["tta_probs"]``),
  ``variation_ratio`` from ``signals["tta_variation_ratio"]`` (``auto``
  without them). Item score: ``policy.reduction`` over the boxes shown at
  ``DISPLAY_THRESHOLD``; an image where nothing passed is scored from its
  best sub-threshold candidates; no box at all is the blind spot and scores
  ``policy.empty_score`` (default 1.0: label it first).
- Masks: ``1 - min(iou, stability)``, reduced by ``policy.reduction``.
- Detector -> segmenter chains (both kinds in one prediction): the **max** of
  the detection score and the mask score. Either can make an image worth a
  look: a sure box whose mask is unstable still needs a human for the
  outline, and a good mask does not make a doubtful box certain.
- Classes (``engine.review.scoring_text.class_score``): ``policy.score`` of
  the full probability row (``auto`` = ``margin``), summed into the Label
  Studio project's choices first when ``/predict`` stored them
  (``signals["class_groups"]``).

**Texts** (``text_score``, ``engine.review.scoring_text``): word scores from
the word table (``auto`` = normalised ``entropy``; ``bald`` /
``variation_ratio`` on MC-dropout passes), span = mean of its words, sentence
= max of its spans (or of its words without a span), item =
``policy.reduction`` over sentences.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.review.scoring_text import class_score, policy_reduction, squash, text_score_under
from engine.sampling import get_score
from engine.sampling.policies import (
    detection_item_scores,
    detection_region_scores,
    mask_item_scores,
)
from engine.sampling.policy import RankPolicy
from engine.types import Prediction

DISPLAY_THRESHOLD = 0.25
DEFAULT_POLICY = RankPolicy()


def queue_score(prediction: Prediction, kind: str, policy: RankPolicy | None = None) -> float:
    """The queue score in [0, 1] of an ``image`` or ``text`` item's prediction."""
    if kind == "image":
        return image_score(prediction, policy)
    if kind == "text":
        return text_score_under(prediction, policy or DEFAULT_POLICY)
    raise ValueError(f"no queue score for {kind!r} items")


def text_score(
    prediction: Prediction,
    *,
    token_score: str = "entropy",
    item_reduction: str = "max",
    empty_score: float = 1.0,
) -> float:
    """A text prediction's score under the default rules with these three choices."""
    policy = RankPolicy(score=token_score, reduction=item_reduction, empty_score=empty_score)
    return text_score_under(prediction, policy)


def image_score(prediction: Prediction, policy: RankPolicy | None = None) -> float:
    """An image prediction's queue score in [0, 1] (rules in the module docstring)."""
    policy = policy or DEFAULT_POLICY
    suggestions = prediction.suggestions
    if not suggestions:
        return policy.empty_score
    if all(s.region is None for s in suggestions) and prediction.probs.shape[1]:
        return class_score(prediction.probs, policy, prediction.signals.get("class_groups"))
    masks = [
        i
        for i, s in enumerate(suggestions)
        if "predicted_iou" in s.attributes and "stability_score" in s.attributes
    ]
    mask_set = set(masks)
    boxes = [i for i in range(len(suggestions)) if i not in mask_set]
    scores = []
    if boxes and prediction.probs.shape[1]:
        scores.append(_detection_score(prediction, boxes, policy))
    if masks:
        scores.append(_mask_score(prediction, masks, policy))
    if scores:
        return max(scores)
    return min(max(1.0 - prediction.max_class_prob, 0.0), 1.0)


def region_scores(prediction: Prediction, rows: list[int], policy: RankPolicy) -> npt.NDArray:
    """Each detection's uncertainty under ``policy.score`` (see the module docstring)."""
    probs = prediction.probs[rows]
    name = policy.score
    tta = prediction.signals.get("tta_probs")
    if name == "bald" and tta is not None and tta.ndim == 3 and tta.shape[0] >= 2:
        passes = np.asarray(tta, dtype=np.float32)[:, rows]
        return _bernoulli_bald(passes)
    spread = prediction.signals.get("tta_variation_ratio")
    if name == "variation_ratio" and spread is not None and len(spread) == len(prediction.probs):
        return np.clip(np.asarray(spread, dtype=np.float64)[rows], 0.0, 1.0)
    if name in ("least_confidence", "margin", "entropy"):
        rows_pos = np.maximum(probs, 0.0) + 1e-12
        return np.asarray(get_score(name)(rows_pos, normalize=True), dtype=np.float64)
    return detection_region_scores(probs)


def _bernoulli_bald(passes: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """BALD of per-class sigmoid rows over passes ``[T, n, C]``: max over classes."""
    p = np.clip(passes.astype(np.float64), 1e-9, 1 - 1e-9)

    def h(q: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))

    mutual = h(p.mean(axis=0)) - h(p).mean(axis=0)
    return np.clip(mutual.max(axis=-1), 0.0, 1.0) if mutual.size else np.zeros(p.shape[1])


def _detection_score(prediction: Prediction, rows: list[int], policy: RankPolicy) -> float:
    confidences = np.array([prediction.suggestions[i].score for i in rows])
    scores = detection_item_scores(
        region_scores(prediction, rows, policy),
        confidences,
        np.zeros(len(rows), dtype=np.intp),
        1,
        display_threshold=DISPLAY_THRESHOLD,
        reduction=policy_reduction(policy),
        empty_score=policy.empty_score,
    )
    return squash(float(scores[0]), policy)


def _mask_score(prediction: Prediction, rows: list[int], policy: RankPolicy) -> float:
    attributes = [prediction.suggestions[i].attributes for i in rows]
    scores = mask_item_scores(
        [float(a["predicted_iou"]) for a in attributes],
        [float(a["stability_score"]) for a in attributes],
        np.zeros(len(rows), dtype=np.intp),
        1,
        reduction=policy_reduction(policy),
    )
    return squash(float(scores[0]), policy)
