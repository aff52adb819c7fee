"""Text and whole-item class scores under a ``RankPolicy`` (see ``engine.review.scoring``).

Texts read their word table from the prediction (a tagger's ``TextTokens``)
or from the stored signals ``token_probs`` / ``token_sentence`` /
``token_span``, so a text re-ranked from the store scores exactly as it did
when the model ran:

- word score: ``policy.score`` of the word's tag distribution (``auto`` =
  normalised ``entropy``); ``bald`` / ``variation_ratio`` on
  ``signals["mc_token_probs"]`` (``[T, n_words, n_tags]``, MC dropout) where
  present, ``auto`` otherwise;
- span score: ``mean`` over its words; sentence score: ``max`` over its spans,
  or the ``max`` word score when it has no span, so "found nothing" is not
  automatically certain (``engine.sampling.sentence_scores``);
- item score: ``policy.reduction`` over sentences.

Backends that score sentences directly (``sentence_uncertainty``, spaCy's
beam) reduce those. A prediction with no distribution at all gets
``policy.empty_score`` (nothing is known about its uncertainty: label first).
A word-less text scores 0.0 (nothing to label). A suggestion's ``score`` is
never turned into an uncertainty: for some backends it is a decision.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.models.ner.uncertainty import TextTokens
from engine.sampling import get_score, sentence_scores
from engine.sampling.policy import STOCHASTIC, RankPolicy
from engine.sampling.reductions import Reduction, get_reduction
from engine.types import Prediction


def policy_reduction(policy: RankPolicy) -> Reduction:
    if policy.reduction == "topk_mean":
        return get_reduction("topk_mean", k=policy.top_k)
    return get_reduction(policy.reduction)


def squash(value: float, policy: RankPolicy) -> float:
    """Into [0, 1]: ``sum`` reductions by ``1 - e^-x``, the others by clipping."""
    if policy.reduction == "sum":
        value = 1.0 - math.exp(-max(value, 0.0))
    return float(min(max(float(value), 0.0), 1.0))


def _reduce(values: npt.NDArray[np.float64], policy: RankPolicy) -> float:
    reduced = policy_reduction(policy)(values, offsets=np.array([0, len(values)]))
    return squash(float(reduced[0]), policy)


def class_score(
    probs: npt.NDArray[np.float32], policy: RankPolicy, groups: npt.NDArray[Any] | None = None
) -> float:
    """A whole-item classifier's score: ``policy.score`` of its probability row(s).

    ``groups`` (``signals["class_groups"]``: each class's choice index, -1 for none)
    sums the row into the project's choices first, the unmapped mass one "other"."""
    name = "margin" if policy.score in ("auto", *STOCHASTIC) else policy.score
    row = np.maximum(np.asarray(probs, dtype=np.float64), 0.0)
    if groups is not None and groups.shape == (row.shape[-1],) and len(groups):
        row = grouped_rows(row, np.asarray(groups, dtype=np.intp))
    row = row + 1e-12
    values = np.asarray(get_score(name)(row, normalize=True), dtype=np.float64)
    return _reduce(values, policy)


def grouped_rows(rows: npt.NDArray[np.float64], groups: npt.NDArray[np.intp]) -> Any:
    """``[n, n_classes]`` -> ``[n, n_groups (+1 other when a class maps to none)]``."""
    n_groups = int(groups.max()) + 1 if groups.max() >= 0 else 0
    other = groups < 0
    columns = [rows[:, groups == g].sum(axis=1) for g in range(n_groups)]
    if other.any():
        columns.append(rows[:, other].sum(axis=1))
    return np.stack(columns, axis=1) if columns else rows


def word_table(prediction: Prediction) -> tuple[Any, ...] | None:
    """``(probs, sentence, span, n_sentences)`` from the tokens or the stored signals."""
    tokens = getattr(prediction, "tokens", None)
    if isinstance(tokens, TextTokens):
        return tokens.probs, tokens.sentence, tokens.span, tokens.n_sentences
    signals = prediction.signals
    if "token_probs" not in signals:
        return None
    probs = np.asarray(signals["token_probs"], dtype=np.float32)
    n = probs.shape[0]
    sentence = np.asarray(signals.get("token_sentence", np.zeros(n)), dtype=np.intp)
    span = np.asarray(signals.get("token_span", np.full(n, -1)), dtype=np.intp)
    n_sentences = int(sentence.max()) + 1 if n else 0
    return probs, sentence, span, n_sentences


def word_uncertainty(
    prediction: Prediction, probs: npt.NDArray[np.float32], policy: RankPolicy
) -> npt.NDArray[np.float64]:
    """Each word's score under ``policy.score`` (see the module docstring)."""
    if probs.shape[0] == 0:
        return np.zeros(0)
    passes = prediction.signals.get("mc_token_probs")
    if policy.score in STOCHASTIC and passes is not None and passes.shape[1:] == probs.shape:
        stacked = np.maximum(np.asarray(passes, dtype=np.float32), 0.0) + 1e-9
        return np.asarray(get_score(policy.score)(stacked, normalize=True), dtype=np.float64)
    name = "entropy" if policy.score in ("auto", *STOCHASTIC) else policy.score
    return np.asarray(get_score(name)(probs, normalize=True), dtype=np.float64)


def text_score_under(prediction: Prediction, policy: RankPolicy) -> float:
    """A text prediction's queue score in [0, 1] (rules in the module docstring)."""
    table = word_table(prediction)
    if table is not None:
        probs, sentence, span, n_sentences = table
        if probs.shape[0] == 0:
            return 0.0  # no word at all: nothing to label
        per_word = word_uncertainty(prediction, probs, policy)
        return _reduce(sentence_scores(per_word, sentence, n_sentences, span), policy)
    sentence_unc = getattr(prediction, "sentence_uncertainty", None)
    if sentence_unc is None:
        sentence_unc = prediction.signals.get("sentence_uncertainty")
    if sentence_unc is not None and len(sentence_unc):
        return _reduce(np.asarray(sentence_unc, dtype=np.float64), policy)
    if not prediction.suggestions or not prediction.probs.shape[1]:
        return squash(policy.empty_score, policy)
    name = "entropy" if policy.score in ("auto", *STOCHASTIC) else policy.score
    values = np.asarray(get_score(name)(prediction.probs, normalize=True), dtype=np.float64)
    return _reduce(values, policy)
