"""Tag schemes, word-level aggregation and span decoding for token taggers.

Pure numpy / Python: shared by the transformers tagger, the training loop's
evaluation and the CoNLL export, so a tag sequence means the same everywhere.

Tag schemes
    ``O`` plus ``B-X`` / ``I-X`` (IOB2, also IOB1), ``E-X`` / ``L-X`` (end) and
    ``S-X`` / ``U-X`` (single) from BIOES / BILOU, and bare ``X`` (IO). Decoding
    is lenient, like conlleval: an ``I-X`` that does not continue an open ``X``
    entity (after ``O``, at the start, or after another type) opens a new one.

Word aggregation (``AGGREGATIONS``), from sub-token rows to one row per word:
    ``first``   the word's first sub-token row (what the model is trained on).
    ``average`` the mean of the word's sub-token rows.
    ``max``     the row of the sub-token whose top probability is highest.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

AGGREGATIONS: tuple[str, ...] = ("first", "average", "max")
_BEGIN = frozenset({"B", "S", "U"})
_END = frozenset({"E", "L", "S", "U"})
_PREFIXES = frozenset({"B", "I", "E", "L", "S", "U"})
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*")

IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class TagSet:
    """Tag names in model order, each split into ``(prefix, entity type)``."""

    names: tuple[str, ...]
    prefixes: tuple[str, ...]
    types: tuple[str | None, ...]

    @classmethod
    def parse(cls, names: Sequence[str]) -> TagSet:
        if not names:
            raise ValueError("a tag set needs at least one tag")
        prefixes: list[str] = []
        types: list[str | None] = []
        for name in names:
            prefix, entity = split_tag(name)
            prefixes.append(prefix)
            types.append(entity)
        if len(set(names)) != len(names):
            raise ValueError(f"tag names must be unique, got {list(names)}")
        return cls(tuple(names), tuple(prefixes), tuple(types))

    @property
    def entity_types(self) -> tuple[str, ...]:
        """Entity types in first-seen order (``O`` excluded)."""
        return tuple(dict.fromkeys(t for t in self.types if t is not None))

    def type_mass(self, probs: npt.NDArray[np.float32], entity: str) -> npt.NDArray[np.float32]:
        """``sum`` of the columns of every tag of ``entity`` (``[n, n_tags] -> [n]``)."""
        columns = [i for i, t in enumerate(self.types) if t == entity]
        return probs[:, columns].sum(axis=1)


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER" -> ("B", "PER")``, ``"O" -> ("O", None)``, ``"PER" -> ("", "PER")`` (IO)."""
    if not tag:
        raise ValueError("a tag must be a non-empty string")
    if tag == "O":
        return "O", None
    head, sep, rest = tag.partition("-")
    if sep and head in _PREFIXES and rest:
        return head, rest
    return "", tag


def decode_tags(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Entities ``(start, end_exclusive, type)`` in a tag sequence (lenient, see module doc)."""
    tagset = TagSet.parse(sorted(set(tags))) if tags else None
    if tagset is None:
        return []
    index = {name: i for i, name in enumerate(tagset.names)}
    return decode_ids(np.array([index[t] for t in tags], dtype=np.intp), tagset)


def decode_ids(tag_ids: npt.ArrayLike, tagset: TagSet) -> list[tuple[int, int, str]]:
    """Entities ``(start, end_exclusive, type)`` from tag indices into ``tagset``."""
    spans: list[tuple[int, int, str]] = []
    open_type: str | None = None
    open_start = 0
    ids = np.asarray(tag_ids, dtype=np.intp).tolist()
    for position, tag_id in enumerate(ids):
        prefix, entity = tagset.prefixes[tag_id], tagset.types[tag_id]
        continues = entity is not None and entity == open_type and prefix not in _BEGIN
        if not continues and open_type is not None:
            spans.append((open_start, position, open_type))
            open_type = None
        if entity is not None and not continues:
            open_type, open_start = entity, position
        if open_type is not None and prefix in _END:
            spans.append((open_start, position + 1, open_type))
            open_type = None
    if open_type is not None:
        spans.append((open_start, len(ids), open_type))
    return spans


def encode_spans(n_words: int, spans: Sequence[tuple[int, int, str]]) -> list[str]:
    """IOB2 tags for ``n_words`` words from ``(start, end_exclusive, type)`` word spans."""
    tags = ["O"] * n_words
    for start, end, entity in sorted(spans):
        if not 0 <= start < end <= n_words:
            raise ValueError(f"word span [{start}, {end}) is outside 0..{n_words}")
        if any(tag != "O" for tag in tags[start:end]):
            raise ValueError(f"word span [{start}, {end}) {entity!r} overlaps another span")
        tags[start] = f"B-{entity}"
        tags[start + 1 : end] = [f"I-{entity}"] * (end - start - 1)
    return tags


def word_starts(word_ids: IntArray) -> IntArray:
    """Index of the first sub-token of each word (``word_ids`` non-decreasing)."""
    if len(word_ids) == 0:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.r_[True, word_ids[1:] != word_ids[:-1]])


def aggregate_words(
    token_probs: npt.NDArray[np.float32], word_ids: IntArray, strategy: str = "first"
) -> npt.NDArray[np.float32]:
    """One probability row per word from sub-token rows ``[n_tokens, n_tags]``.

    ``word_ids[i]`` is the word of token ``i`` (non-decreasing; specials removed).
    """
    if strategy not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {strategy!r}")
    if token_probs.shape[0] != len(word_ids):
        raise ValueError(f"{token_probs.shape[0]} token rows for {len(word_ids)} word ids")
    starts = word_starts(word_ids)
    if len(starts) == 0 or strategy == "first":
        return token_probs[starts]
    if strategy == "average":
        counts = np.diff(np.r_[starts, len(word_ids)])
        return np.add.reduceat(token_probs, starts, axis=0) / counts[:, None]
    top = token_probs.max(axis=1)
    word_top = np.maximum.reduceat(top, starts)
    owner = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(word_ids)]))
    is_best = top == word_top[owner]
    first_best = np.full(len(starts), len(word_ids), dtype=np.intp)
    np.minimum.at(first_best, owner[is_best], np.flatnonzero(is_best))
    return token_probs[first_best]


def word_offsets(token_offsets: IntArray, word_ids: IntArray) -> IntArray:
    """``[n_words, 2]`` char offsets: first sub-token's start, last sub-token's end."""
    starts = word_starts(word_ids)
    ends = np.r_[starts[1:], len(word_ids)] - 1
    return np.stack([token_offsets[starts, 0], token_offsets[ends, 1]], axis=1)


def sentence_ids(text: str, starts_chars: IntArray) -> IntArray:
    """Sentence index of each word from its start offset (heuristic splitter).

    A sentence ends after ``.``, ``!`` or ``?`` (plus closing quotes or brackets)
    followed by whitespace, or at a line break. Returns ``int[n_words]``.
    """
    breaks = np.array([m.end() for m in _SENTENCE_BREAK.finditer(text)], dtype=np.intp)
    return np.searchsorted(breaks, starts_chars, side="right").astype(np.intp)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Half-open char ranges of the sentences ``sentence_ids`` numbers (same splitter).

    Whitespace-only pieces (a text that opens with a line break) are left out.
    """
    cuts = [0, *(m.end() for m in _SENTENCE_BREAK.finditer(text)), len(text)]
    return [(a, b) for a, b in itertools.pairwise(cuts) if text[a:b].strip()]
