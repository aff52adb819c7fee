"""Text predictions that keep their per-word tag distributions.

``TextPrediction`` is a ``Prediction`` (stored, encoded and served exactly like
one) that additionally carries ``TextTokens``: the tag distribution of every
word the tagger read, with its character offsets, its sentence and its span.
That table is what uncertainty needs: a sentence where the model found nothing
still has words, and their distributions say whether "nothing" was a sure call.
The table also travels as ``Prediction.signals`` (``token_probs``,
``token_sentence``, ``token_span``; ``sentence_uncertainty`` likewise), set in
``__post_init__`` when absent, so the store keeps it and the queue can be
re-ranked later without the model.

The queue score built from them is ``engine.review.scoring.text_score``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.sampling import get_score
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

    def __post_init__(self) -> None:
        signals = dict(self.signals)
        if self.tokens is not None:
            signals.setdefault("token_probs", self.tokens.probs)
            signals.setdefault("token_sentence", self.tokens.sentence)
            signals.setdefault("token_span", self.tokens.span)
        if self.sentence_uncertainty is not None:
            signals.setdefault("sentence_uncertainty", self.sentence_uncertainty)
        object.__setattr__(self, "signals", signals)
        super().__post_init__()  # checks every signal
        if self.sentence_uncertainty is None and "sentence_uncertainty" in self.signals:
            object.__setattr__(self, "sentence_uncertainty", self.signals["sentence_uncertainty"])


def word_scores(probs: FloatArray, token_score: str = "entropy") -> npt.NDArray[np.float64]:
    """``engine.sampling`` score of each word row (rows renormalised against fp16 noise)."""
    if probs.shape[0] == 0:
        return np.zeros(0)
    return np.asarray(get_score(token_score)(probs, normalize=True), dtype=np.float64)


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
