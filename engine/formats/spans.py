"""Text spans: validate span edits, collect reviewed spans, export CoNLL and spaCy JSON.

Reviewed spans of a text item (``reviewed_spans``) are its labels after review
(``engine.store.labels``, the same rules every export follows) that are spans,
once an item-level ``accept`` / ``edit`` / ``reject`` finished the item (else
``None``: not reviewed yet); where two overlap, the earlier-starting (then
longer) one is kept. So: a suggestion's latest decision wins (``accept`` keeps
it, ``edit`` replaces its span and / or label, ``reject`` drops it); an
undecided suggestion is kept when the item was accepted as a whole and dropped
when it was edited or rejected; item-level feedback with a ``Span`` and a label
adds an entity the model missed.

Exports (words = runs of word characters or single punctuation marks, the
same split the trainer uses; a span tags every word it overlaps):

- ``to_conll``: ``word<TAB>IOB2-tag`` lines, a blank line between sentences
  (``-DOCSTART-`` line between documents), what ``read_conll`` reads back;
- ``to_spacy_json``: spaCy's JSON training format (v2, what
  ``spacy convert`` reads): documents -> paragraphs with ``raw`` text ->
  sentences -> tokens with ``orth``, ``ner`` (BILUO) and trailing ``space``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.store import Store
from engine.types import Item, Span

_WORD = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"[.!?]")


@dataclass(frozen=True)
class LabeledSpan:
    """A gold entity: ``[start, end)`` char offsets into the item text, and its label."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class TextAnnotation:
    item_id: str
    text: str
    spans: tuple[LabeledSpan, ...]


def validate_span(
    item: Item, start: int, end: int, label: str, *, labels: Sequence[str] | None = None
) -> Span:
    """A ``Span`` for an edit, checked against the item text and the allowed labels.

    Raises ``ValueError`` naming the problem: not a text item, offsets outside
    the text, an empty or whitespace-only span, surrounding whitespace, or a
    label not in ``labels``.
    """
    if item.kind != "text" or item.text is None:
        raise ValueError(f"item {item.item_id!r} is not a text item; spans need text")
    text = item.text
    if isinstance(start, bool) or isinstance(end, bool):
        raise ValueError("span start and end must be integers")
    if not 0 <= start < end <= len(text):
        raise ValueError(f"span [{start}, {end}) is outside the text (0..{len(text)})")
    piece = text[start:end]
    if not piece.strip():
        raise ValueError(f"span [{start}, {end}) covers only whitespace")
    if piece != piece.strip():
        raise ValueError(f"span [{start}, {end}) {piece!r} starts or ends with whitespace")
    if not label or not label.strip():
        raise ValueError("a span needs a non-empty label")
    if labels is not None and label not in labels:
        raise ValueError(f"label {label!r} is not one of {sorted(labels)}")
    return Span(start, end, piece)


def reviewed_spans(store: Store, item_id: str) -> TextAnnotation | None:
    """The item's gold spans: its labels after review (``Store.item_labels``) that are
    spans, once the item is finished; ``None`` before (rules in the module docstring)."""
    item = store.get_item(item_id)
    if item.kind != "text" or item.text is None:
        raise ValueError(f"item {item_id!r} is not a text item")
    labels = store.item_labels(item)
    if labels.decision is None:
        return None
    spans = [
        LabeledSpan(lab.region.start, lab.region.end, lab.label)
        for lab in labels.labels
        if isinstance(lab.region, Span)
    ]
    return TextAnnotation(item_id, item.text, _non_overlapping(spans, len(item.text)))


def _non_overlapping(spans: Iterable[LabeledSpan], n_chars: int) -> tuple[LabeledSpan, ...]:
    kept: list[LabeledSpan] = []
    for span in sorted(set(spans), key=lambda s: (s.start, -s.end, s.label)):
        if span.end <= n_chars and (not kept or span.start >= kept[-1].end):
            kept.append(span)
    return tuple(kept)


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def word_tags(text: str, spans: Sequence[LabeledSpan]) -> list[tuple[str, int, int, str]]:
    """``(word, start, end, IOB2 tag)`` for every word of ``text``."""
    words = _words(text)
    tags = ["O"] * len(words)
    for span in spans:
        inside = [i for i, (_, s, e) in enumerate(words) if s < span.end and e > span.start]
        for rank, i in enumerate(inside):
            if tags[i] == "O":
                tags[i] = f"{'B' if rank == 0 else 'I'}-{span.label}"
    return [(w, s, e, t) for (w, s, e), t in zip(words, tags, strict=True)]


def _sentences(rows: list[tuple[str, int, int, str]]) -> list[list[tuple[str, int, int, str]]]:
    """Cut after ``.``/``!``/``?`` words, never inside an entity."""
    out: list[list[tuple[str, int, int, str]]] = [[]]
    for k, row in enumerate(rows):
        out[-1].append(row)
        next_tag = rows[k + 1][3] if k + 1 < len(rows) else "O"
        if _SENTENCE_END.fullmatch(row[0]) and not next_tag.startswith("I-"):
            out.append([])
    return [s for s in out if s]


def to_conll(annotations: Iterable[TextAnnotation]) -> str:
    """CoNLL IOB2 text (see module docstring)."""
    blocks = []
    for annotation in annotations:
        rows = word_tags(annotation.text, annotation.spans)
        sentences = ["\n".join(f"{w}\t{t}" for w, _, _, t in s) for s in _sentences(rows)]
        blocks.append("\n\n".join(["-DOCSTART-\tO", *sentences]))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def _biluo(tags: list[str]) -> list[str]:
    out = []
    for k, tag in enumerate(tags):
        if tag == "O":
            out.append("O")
            continue
        entity = tag[2:]
        last = k + 1 == len(tags) or tags[k + 1] != f"I-{entity}"
        if tag.startswith("B-"):
            out.append(f"U-{entity}" if last else f"B-{entity}")
        else:
            out.append(f"L-{entity}" if last else f"I-{entity}")
    return out


def to_spacy_json(annotations: Iterable[TextAnnotation]) -> str:
    """spaCy v2 JSON training data (see module docstring)."""
    docs = []
    for doc_id, annotation in enumerate(annotations):
        rows = word_tags(annotation.text, annotation.spans)
        text = annotation.text
        sentences, token_id = [], 0
        for sentence in _sentences(rows):
            tags = _biluo([t for *_, t in sentence])
            tokens = []
            for (word, _, end, _), ner in zip(sentence, tags, strict=True):
                space = " " if end < len(text) and text[end].isspace() else ""
                tokens.append({"id": token_id, "orth": word, "ner": ner, "space": space})
                token_id += 1
            sentences.append({"tokens": tokens, "brackets": []})
        paragraph = {"raw": text, "sentences": sentences}
        docs.append(
            {"id": doc_id, "meta": {"item_id": annotation.item_id}, "paragraphs": [paragraph]}
        )
    return json.dumps(docs, ensure_ascii=False, indent=1)
