"""One queue score per prediction (higher = label first): ``queue_score``.

Every score is in [0, 1] and comes from ``engine.sampling``'s policies; the
pre-label job, Label Studio's ``/predict`` and any re-ranking call
``queue_score(prediction, kind)`` and nothing else. ``DISPLAY_THRESHOLD`` is
the confidence under which an editor is not shown a suggestion (and the
detection policy reasons about what was shown).

**Images** (``image_score``). A suggestion is a *mask* when its attributes
carry ``predicted_iou`` and ``stability_score`` (a segmenter's quality heads);
every other suggestion is a *detection*.

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

**Texts** (``text_score``), from the word table of a ``TextPrediction``
(``engine.models.ner.uncertainty``):

- word score: ``token_score`` (default normalised ``entropy``; ``margin`` and
  ``least_confidence`` also work) of the word's tag distribution;
- span score: ``mean`` over its words; sentence score: ``max`` over its spans,
  or the ``max`` word score when it has no span, so "found nothing" is not
  automatically certain (``engine.sampling.sentence_scores``);
- item score: ``item_reduction`` (default ``max``) over sentences.

A prediction without a word table (a plain ``Prediction`` rebuilt from the
store or the wire) falls back to its per-span ``probs`` rows (``token_score``
of each row, then ``item_reduction``). One with no distribution at all (no
rows, or rows of width 0 such as spaCy's decisions) gets ``empty_score``
(default 1.0): nothing is known about its uncertainty, so it goes to a human
first, the same rule as an image with no detection. A suggestion's ``score``
is never turned into an uncertainty: for some backends it is a decision.
"""

from __future__ import annotations

import numpy as np

from engine.models.ner.uncertainty import TextTokens, word_scores
from engine.sampling import Reduction, get_reduction, sentence_scores
from engine.sampling.policies import (
    detection_item_scores,
    detection_region_scores,
    mask_item_scores,
)
from engine.types import Prediction

DISPLAY_THRESHOLD = 0.25


def queue_score(prediction: Prediction, kind: str) -> float:
    """The queue score in [0, 1] of an ``image`` or ``text`` item's prediction."""
    if kind == "image":
        return image_score(prediction)
    if kind == "text":
        return text_score(prediction)
    raise ValueError(f"no queue score for {kind!r} items")


def image_score(prediction: Prediction) -> float:
    """An image prediction's queue score in [0, 1] (rules in the module docstring)."""
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


def text_score(
    prediction: Prediction,
    *,
    token_score: str = "entropy",
    item_reduction: str = "max",
    empty_score: float = 1.0,
) -> float:
    """A text prediction's queue score in [0, 1] (rules in the module docstring)."""
    reduction = get_reduction(item_reduction)
    tokens = getattr(prediction, "tokens", None)
    if isinstance(tokens, TextTokens):
        if tokens.n_words == 0:
            return 0.0  # no word at all: nothing to label
        per_word = word_scores(tokens.probs, token_score)
        per_sentence = sentence_scores(per_word, tokens.sentence, tokens.n_sentences, tokens.span)
        return _unit(reduction(per_sentence, offsets=np.array([0, len(per_sentence)]))[0])
    sentence_unc = getattr(prediction, "sentence_uncertainty", None)
    if sentence_unc is not None and len(sentence_unc):
        values = np.asarray(sentence_unc, dtype=np.float64)
        return _unit(reduction(values, offsets=np.array([0, len(values)]))[0])
    return _from_suggestions(prediction, token_score, reduction, empty_score)


def _from_suggestions(
    prediction: Prediction, token_score: str, reduction: Reduction, empty_score: float
) -> float:
    if not prediction.suggestions or not prediction.probs.shape[1]:
        return _unit(empty_score)
    values = word_scores(prediction.probs, token_score)
    return _unit(reduction(values, offsets=np.array([0, len(values)]))[0])


def _unit(value: float) -> float:
    return float(min(max(float(value), 0.0), 1.0))
