"""Tag decoding, word aggregation, windows and text uncertainty (pure numpy, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.models.ner.decode import (
    TagSet,
    aggregate_words,
    decode_tags,
    encode_spans,
    sentence_ids,
    split_tag,
)
from engine.models.ner.uncertainty import TextPrediction, TextTokens
from engine.models.ner.windows import (
    length_batches,
    merge_windows,
    pad_batch,
    plan_windows,
    window_starts,
)
from engine.review.scoring import text_score
from engine.types import Prediction, Span, Suggestion


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [(0, 2, "PER"), (3, 4, "LOC")]),
        (["I-PER", "I-PER", "O"], [(0, 2, "PER")]),  # I- without B- opens an entity
        (["O", "I-ORG", "I-LOC"], [(1, 2, "ORG"), (2, 3, "LOC")]),  # type switch
        (["B-PER", "B-PER", "I-PER"], [(0, 1, "PER"), (1, 3, "PER")]),
        (["S-LOC", "B-PER", "E-PER", "I-PER"], [(0, 1, "LOC"), (1, 3, "PER"), (3, 4, "PER")]),
        (["PER", "PER", "O", "LOC"], [(0, 2, "PER"), (3, 4, "LOC")]),  # IO scheme
        (["O", "O"], []),
        ([], []),
    ],
)
def test_decode_tags(tags: list[str], spans: list[tuple[int, int, str]]) -> None:
    assert decode_tags(tags) == spans


def test_encode_spans_round_trips_and_refuses_overlaps() -> None:
    spans = [(0, 2, "PER"), (3, 4, "LOC")]
    tags = encode_spans(5, spans)
    assert tags == ["B-PER", "I-PER", "O", "B-LOC", "O"]
    assert decode_tags(tags) == spans
    with pytest.raises(ValueError, match="overlaps"):
        encode_spans(5, [(0, 2, "PER"), (1, 3, "LOC")])
    with pytest.raises(ValueError, match="outside"):
        encode_spans(2, [(1, 3, "PER")])


def test_split_tag_and_tagset() -> None:
    assert split_tag("B-ORG") == ("B", "ORG")
    assert split_tag("O") == ("O", None)
    assert split_tag("B-I-X") == ("B", "I-X")
    assert split_tag("LABEL_0") == ("", "LABEL_0")
    tagset = TagSet.parse(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    assert tagset.entity_types == ("PER", "LOC")
    probs = np.array([[0.1, 0.5, 0.2, 0.1, 0.1]], dtype=np.float32)
    np.testing.assert_allclose(tagset.type_mass(probs, "PER"), [0.7])
    with pytest.raises(ValueError, match="unique"):
        TagSet.parse(["O", "O"])


def test_aggregation_strategies() -> None:
    rows = np.array(
        [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]], dtype=np.float32
    )  # word 0 = tokens 0..2, word 1 = token 3
    word_ids = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(aggregate_words(rows, word_ids, "first"), rows[[0, 3]])
    np.testing.assert_allclose(
        aggregate_words(rows, word_ids, "average"), [[0.5, 0.5], [0.7, 0.3]], atol=1e-6
    )
    np.testing.assert_allclose(aggregate_words(rows, word_ids, "max"), rows[[0, 3]])
    rows[1] = [0.05, 0.95]
    np.testing.assert_allclose(aggregate_words(rows, word_ids, "max")[0], [0.05, 0.95])
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_words(rows, word_ids, "mean")


def test_sentence_ids_split_after_terminal_punctuation_and_newlines() -> None:
    text = "Hi there. Second one!\nThird"
    starts = np.array([0, 3, 10, 17, 22])
    assert sentence_ids(text, starts).tolist() == [0, 0, 1, 1, 2]


def test_windows_cover_every_token_with_the_given_overlap() -> None:
    assert window_starts(20, 8, 2) == [0, 6, 12]
    assert window_starts(8, 8, 2) == [0]
    assert window_starts(0, 8, 2) == [0]
    windows = plan_windows([20, 0, 3], 8, 2)
    assert [(w.text_index, w.start, w.end) for w in windows] == [
        (0, 0, 8), (0, 6, 14), (0, 12, 20), (2, 0, 3),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="stride"):
        window_starts(10, 4, 4)


def test_merge_windows_takes_each_token_once_splitting_overlaps_in_the_middle() -> None:
    windows = plan_windows([20], 8, 4)
    # each window's rows hold (global token index, window index)
    rows = [
        np.stack([np.arange(w.start, w.end), np.full(w.length, k)], axis=1).astype(np.float32)
        for k, w in enumerate(windows)
    ]
    merged = merge_windows(windows, rows, 20)
    assert merged[:, 0].tolist() == list(range(20))
    # windows [0,8) [4,12) [8,16) [12,20): cuts at 6, 10, 14
    assert merged[:, 1].tolist() == [0] * 6 + [1] * 4 + [2] * 4 + [3] * 6
    with pytest.raises(ValueError, match="expected 21"):
        merge_windows(windows, rows, 21)


def test_length_batches_group_similar_lengths_and_pad_dynamically() -> None:
    windows = plan_windows([5, 30, 6, 29, 1], 64, 8)
    batches = length_batches(windows, 2)
    assert batches == [[1, 3], [2, 0], [4]]
    ids, mask = pad_batch([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def _tokens(probs: list[list[float]], sentence: list[int], span: list[int]) -> TextTokens:
    n = len(probs)
    return TextTokens(
        offsets_chars=np.stack([np.arange(n) * 2, np.arange(n) * 2 + 1], axis=1),
        probs=np.array(probs, dtype=np.float32),
        sentence=np.array(sentence, dtype=np.intp),
        span=np.array(span, dtype=np.intp),
        n_sentences=max(sentence) + 1,
        tag_names=("O", "B-PER", "I-PER"),
    )


def _text_prediction(tokens: TextTokens | None, n_spans: int = 0) -> TextPrediction:
    suggestions = tuple(
        Suggestion("PER", 0.9, Span(0, 1), "m", "v") for _ in range(n_spans)
    )  # fmt: skip
    return TextPrediction(
        item_id="a",
        model_name="m",
        model_version="v",
        suggestions=suggestions,
        probs=np.full((n_spans, 3), 1 / 3, dtype=np.float32),
        class_names=("O", "B-PER", "I-PER"),
        tokens=tokens,
    )


def test_a_sentence_without_entities_takes_its_most_uncertain_word() -> None:
    sure = [1.0, 0.0, 0.0]
    unsure = [0.4, 0.3, 0.3]
    # sentence 0: one confident entity; sentence 1: no entity, one unsure word
    tokens = _tokens(
        [sure, [0.0, 1.0, 0.0], sure, sure, unsure], [0, 0, 0, 1, 1], [-1, 0, -1, -1, -1]
    )
    score = text_score(_text_prediction(tokens, 1))
    expected = -(0.4 * np.log(0.4) + 2 * 0.3 * np.log(0.3)) / np.log(3)
    assert score == pytest.approx(expected, rel=1e-5)
    all_sure = _tokens([sure, [0.0, 1.0, 0.0], sure], [0, 0, 1], [-1, 0, -1])
    assert text_score(_text_prediction(all_sure, 1)) == pytest.approx(0.0, abs=1e-6)


def test_span_score_is_the_mean_of_its_words() -> None:
    half = [0.5, 0.5, 0.0]
    tokens = _tokens([[0.0, 1.0, 0.0], half, [1.0, 0.0, 0.0]], [0, 0, 0], [0, 0, -1])
    score = text_score(_text_prediction(tokens, 1))
    assert score == pytest.approx((np.log(2) / np.log(3)) / 2, rel=1e-5)
    assert text_score(_text_prediction(tokens, 1), token_score="margin") == pytest.approx(0.5)


def test_predictions_without_distributions_are_unknown_not_certain() -> None:
    decision_only = Prediction(
        item_id="a",
        model_name="spacy",
        model_version="v",
        suggestions=(Suggestion("GPE", 1.0, Span(0, 5), "spacy", "v"),),
        probs=np.zeros((1, 0), dtype=np.float32),
    )
    assert text_score(decision_only) == 1.0
    assert text_score(decision_only, empty_score=0.5) == 0.5
    rows_only = Prediction(
        item_id="a",
        model_name="m",
        model_version="v",
        suggestions=(Suggestion("PER", 0.9, Span(0, 1), "m", "v"),),
        probs=np.array([[0.0, 1.0, 0.0]], dtype=np.float32),
        class_names=("O", "B-PER", "I-PER"),
    )
    assert text_score(rows_only) == pytest.approx(0.0, abs=1e-6)
    empty_words = _tokens([[1.0, 0.0, 0.0]], [0], [-1])
    assert text_score(_text_prediction(empty_words)) == pytest.approx(0.0, abs=1e-6)


def test_text_tokens_validate_shapes() -> None:
    with pytest.raises(ValueError, match="probs"):
        TextTokens(
            np.zeros((1, 2), dtype=np.int64),
            np.ones((1, 2), dtype=np.float32),
            np.zeros(1, dtype=np.intp),
            np.full(1, -1, dtype=np.intp),
            1,
            ("O", "B-X", "I-X"),
        )
