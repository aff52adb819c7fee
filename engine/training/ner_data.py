"""Training features for token classification: words + IOB2 tags -> model inputs.

Each sentence is tokenized as pre-split words (``is_split_into_words``); only
the first sub-token of a word carries its tag, the other sub-tokens and the
special tokens get ``-100`` (ignored by the loss), matching the tagger's
default ``first`` aggregation. Sentences longer than ``max_length`` tokens are
truncated (CoNLL-2003 has a handful). Batches are length-grouped: shuffle,
then sort by length inside chunks of ``50 * batch_size`` so padding stays small
while the order stays random.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.models.ner.decode import encode_spans
from engine.training.conll import TaggedSentence

IGNORE_INDEX = -100
_WORD = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Feature:
    input_ids: list[int]
    labels: list[int]


def tag_names(sentences: Sequence[TaggedSentence]) -> tuple[str, ...]:
    """``O`` then ``B-X``, ``I-X`` for every entity type seen, types sorted."""
    types = sorted({tag[2:] for s in sentences for tag in s.tags if tag != "O"})
    return ("O", *[f"{p}-{t}" for t in types for p in ("B", "I")])


def build_features(
    tokenizer: Any, sentences: Sequence[TaggedSentence], tags: Sequence[str], max_length: int
) -> list[Feature]:
    """Token ids and aligned label ids (first sub-token of each word) per sentence."""
    index = {tag: i for i, tag in enumerate(tags)}
    unknown = {t for s in sentences for t in s.tags} - set(index)
    if unknown:
        raise ValueError(f"tags {sorted(unknown)} are not in the label map {list(tags)}")
    enc = tokenizer(
        [list(s.words) for s in sentences],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        return_token_type_ids=False,
        return_attention_mask=False,
    )
    features = []
    for i, sentence in enumerate(sentences):
        labels, previous = [], None
        for word in enc.word_ids(i):
            first = word is not None and word != previous
            labels.append(
                index[sentence.tags[word]] if first and word is not None else IGNORE_INDEX
            )
            previous = word
        features.append(Feature(list(enc["input_ids"][i]), labels))
    return features


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, chunk_batches: int = 50
) -> list[list[int]]:
    """Random batches of similar-length examples (see module docstring)."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * chunk_batches
    batches: list[list[int]] = []
    for begin in range(0, len(order), chunk):
        part = sorted(order[begin : begin + chunk].tolist(), key=lambda i: -lengths[i])
        batches.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(features: Sequence[Feature], pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` arrays."""
    longest = max(len(f.input_ids) for f in features)
    ids = np.full((len(features), longest), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    labels = np.full_like(ids, IGNORE_INDEX)
    for row, f in enumerate(features):
        n = len(f.input_ids)
        ids[row, :n], mask[row, :n], labels[row, :n] = f.input_ids, 1, f.labels
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def words_with_offsets(text: str) -> list[tuple[str, int, int]]:
    """Words (runs of word characters, or single punctuation marks) with char offsets."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def sentence_from_spans(text: str, spans: Sequence[tuple[int, int, str]]) -> TaggedSentence | None:
    """Words of ``text`` tagged IOB2 from char spans ``(start, end, label)``.

    A span covers every word it overlaps (boundaries inside a word snap
    outward); a span that overlaps an earlier one is dropped. ``None`` when the
    text has no word.
    """
    words = words_with_offsets(text)
    if not words:
        return None
    starts = np.array([w[1] for w in words])
    ends = np.array([w[2] for w in words])
    word_spans: list[tuple[int, int, str]] = []
    taken = np.zeros(len(words), dtype=bool)
    for start, end, label in sorted(spans):
        first = int(np.searchsorted(ends, start, side="right"))
        last = int(np.searchsorted(starts, end, side="left"))
        if first >= last or taken[first:last].any():
            continue
        taken[first:last] = True
        word_spans.append((first, last, label))
    tags = encode_spans(len(words), word_spans)
    return TaggedSentence(tuple(w[0] for w in words), tuple(tags))
