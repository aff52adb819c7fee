"""Span edit validation, reviewed spans from the store, CoNLL and spaCy JSON exports."""

from __future__ import annotations

import numpy as np
import pytest

from engine.formats.spans import (
    LabeledSpan,
    TextAnnotation,
    reviewed_spans,
    to_conll,
    to_spacy_json,
    validate_span,
)
from engine.store import Store
from engine.training.conll import parse_conll
from engine.types import Feedback, Item, Prediction, Span, Suggestion

TEXT = "Anna Smith moved to New York. She likes Paris."


def test_validate_span_checks_offsets_whitespace_and_labels() -> None:
    item = Item("a", "text", text=TEXT)
    assert validate_span(item, 20, 28, "LOC") == Span(20, 28, "New York")
    with pytest.raises(ValueError, match="outside the text"):
        validate_span(item, 40, 99, "LOC")
    with pytest.raises(ValueError, match="whitespace"):
        validate_span(item, 19, 28, "LOC")
    with pytest.raises(ValueError, match="only whitespace"):
        validate_span(item, 10, 11, "LOC")
    with pytest.raises(ValueError, match="not one of"):
        validate_span(item, 20, 28, "CITY", labels=["LOC", "PER"])
    with pytest.raises(ValueError, match="non-empty label"):
        validate_span(item, 20, 28, " ")
    with pytest.raises(ValueError, match="not a text item"):
        validate_span(Item("i", "image", uri="x.png"), 0, 1, "LOC")


def _predict(store: Store, spans: list[tuple[int, int, str]]) -> list[int]:
    store.add_items([Item("doc", "text", text=TEXT)], [None])
    suggestions = tuple(
        Suggestion(label, 0.8, Span(s, e, TEXT[s:e]), "m", "v1") for s, e, label in spans
    )
    prediction = Prediction(
        item_id="doc",
        model_name="m",
        model_version="v1",
        suggestions=suggestions,
        probs=np.zeros((len(spans), 0), dtype=np.float32),
    )
    store.save_predictions([prediction], [0.5])
    return [r.suggestion_id for r in store.suggestions_for("doc")]


def _feedback(store: Store, key: str, action: str, **fields: object) -> None:
    store.record_feedback(Feedback(item_id="doc", action=action, client_key=key, **fields))  # type: ignore[arg-type]


def test_reviewed_spans_follow_the_feedback(store: Store) -> None:
    # model: "Anna" PER (too short), "New York" ORG (wrong label), "She" PER (wrong), "Paris" LOC
    ids = _predict(store, [(0, 4, "PER"), (20, 28, "ORG"), (30, 33, "PER"), (40, 45, "LOC")])
    assert reviewed_spans(store, "doc") is None  # not reviewed yet
    _feedback(store, "k1", "edit", suggestion_id=ids[0], region=Span(0, 10))
    _feedback(store, "k2", "edit", suggestion_id=ids[1], label="LOC")
    _feedback(store, "k3", "reject", suggestion_id=ids[2])
    _feedback(store, "k4", "edit", region=Span(45, 46), label="PUNCT")  # an added span
    _feedback(store, "k5", "accept")  # the undecided "Paris" is accepted with the item
    annotation = reviewed_spans(store, "doc")
    assert annotation is not None
    assert [(TEXT[s.start : s.end], s.label) for s in annotation.spans] == [
        ("Anna Smith", "PER"),
        ("New York", "LOC"),
        ("Paris", "LOC"),
        (".", "PUNCT"),
    ]


def test_an_item_rejected_as_a_whole_drops_undecided_suggestions(store: Store) -> None:
    ids = _predict(store, [(0, 10, "PER"), (40, 45, "LOC")])
    _feedback(store, "k1", "accept", suggestion_id=ids[0])
    _feedback(store, "k2", "reject")
    annotation = reviewed_spans(store, "doc")
    assert annotation is not None
    assert [(s.start, s.end, s.label) for s in annotation.spans] == [(0, 10, "PER")]


ANNOTATION = TextAnnotation(
    "doc",
    TEXT,
    (LabeledSpan(0, 10, "PER"), LabeledSpan(20, 28, "LOC"), LabeledSpan(40, 45, "LOC")),
)


def test_conll_export_reads_back_as_iob2_sentences() -> None:
    text = to_conll([ANNOTATION])
    sentences = parse_conll(text.splitlines())
    assert [s.words for s in sentences] == [
        ("Anna", "Smith", "moved", "to", "New", "York", "."),
        ("She", "likes", "Paris", "."),
    ]
    assert sentences[0].tags == ("B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O")
    assert sentences[1].tags == ("O", "O", "B-LOC", "O")
    assert to_conll([]) == ""


def test_spacy_json_export_rebuilds_the_same_entities_in_spacy() -> None:
    from spacy.training.converters import json_to_docs

    docs = list(json_to_docs(to_spacy_json([ANNOTATION])))
    (doc,) = docs
    assert doc.text == TEXT
    assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [
        (0, 10, "PER"),
        (20, 28, "LOC"),
        (40, 45, "LOC"),
    ]
