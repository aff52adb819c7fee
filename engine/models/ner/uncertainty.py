"""Text predictions that keep their per-word tag distributions, and one score per item.

``TextPrediction`` is a ``Prediction`` (stored, encoded and served exactly like
one) that additionally carries ``TextTokens``: the tag distribution of every
word the tagger read, with its character offsets, its sentence and its span.
That table is what uncertainty needs: a sentence where the model found nothing
still has words, and their distributions say whether "nothing" was a sure call.
It lives only in memory (the store keeps the per-span rows in ``probs``), so
the pre-label job scores a prediction right after ``predict``.

Scoring policy (``text_item_score``), all through ``engine.sampling``:

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

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.sampling import Reduction, get_reduction, get_score, sentence_scores
from engine.types import Item, Prediction

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class TextTokens:
    """Per-word tag distributions of one text (words = tokenizer words after aggregation).

    ``offsets_chars``: ``int[n_words, 2]`` half-open char ranges into the text;
    ``probs``: ``float32[n_words, n_tags]``; ``sentence``: ``int[n_words]``;
    ``span``: ``int[n_words]``, index of the suggestion covering the word or -1.
    """

    offsets_chars: npt.NDArray[np.int64]
    probs: FloatArray
    sentence: IntArray
    span: IntArray
    n_sentences: int
    tag_names: tuple[str, ...]

    def __post_init__(self) -> None:
        n = self.probs.shape[0]
        if self.probs.ndim != 2 or self.probs.shape[1] != len(self.tag_names):
            raise ValueError(
                f"probs must be [n_words, {len(self.tag_names)}], got {self.probs.shape}"
            )
        if self.offsets_chars.shape != (n, 2):
            raise ValueError(f"offsets_chars must be [{n}, 2], got {self.offsets_chars.shape}")
        if self.sentence.shape != (n,) or self.span.shape != (n,):
            raise ValueError("sentence and span need one entry per word")
        if n and (self.sentence.min() < 0 or self.sentence.max() >= self.n_sentences):
            raise ValueError(f"sentence ids must lie in [0, {self.n_sentences})")

    @property
    def n_words(self) -> int:
        return int(self.probs.shape[0])


@dataclass(frozen=True)
class TextPrediction(Prediction):
    """A ``Prediction`` plus the word table behind it (``None`` when unavailable).

    ``sentence_uncertainty`` (``float[n_sentences]`` in [0, 1]) is for backends
    that score whole sentences directly (spaCy's beam) instead of words.
    """

    tokens: TextTokens | None = None
    sentence_uncertainty: FloatArray | None = None


def word_scores(probs: FloatArray, token_score: str = "entropy") -> npt.NDArray[np.float64]:
    """``engine.sampling`` score of each word row (rows renormalised against fp16 noise)."""
    if probs.shape[0] == 0:
        return np.zeros(0)
    return np.asarray(get_score(token_score)(probs, normalize=True), dtype=np.float64)


def text_item_score(
    prediction: Prediction,
    *,
    token_score: str = "entropy",
    item_reduction: str = "max",
    empty_score: float = 1.0,
) -> float:
    """One queue score in [0, 1] for a text prediction (higher = label first)."""
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


def text_of(item: Item, given: Any, *, max_chars: int) -> str:
    """The text a tagger reads: ``given`` (decoded input) or the item's own text.

    Non-text items, empty text and text over ``max_chars`` are ``ValueError``.
    """
    if item.kind != "text":
        raise ValueError(f"item {item.item_id!r} is a {item.kind}; the NER tagger reads text")
    text = given if given is not None else item.text
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"item {item.item_id!r} has empty text; nothing to tag")
    if len(text) > max_chars:
        raise ValueError(
            f"item {item.item_id!r} has {len(text)} characters, over max_chars="
            f"{max_chars}; split the text or raise the model's max_chars"
        )
    return text
