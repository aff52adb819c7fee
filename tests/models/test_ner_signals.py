"""HfTokenTagger's extra outputs: embedding, kept word table, opt-in MC dropout (tiny BERTs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import BERT_HIDDEN, NER_TAGS, save_tiny_ner, tiny_bert, tiny_tokenizer

from engine.config import ModelSpec
from engine.models.ner.hf import HfTokenTagger, build_hf_ner
from engine.models.ner.uncertainty import TextPrediction, TextTokens
from engine.review.scoring import queue_score, text_score
from engine.types import EMBEDDING_WIDTH, Item, Prediction

TEXT = "Anna lives in Paris. The new york the."


def tagger(model: Any, tokenizer: Any, **options: Any) -> HfTokenTagger:
    return HfTokenTagger(model, tokenizer, name="tiny", version="v1", device="cpu", **options)


def predict(tg: HfTokenTagger, text: str = TEXT) -> TextPrediction:
    (prediction,) = tg.predict([Item("t1", "text", text=text)])
    assert isinstance(prediction, TextPrediction) and prediction.tokens is not None
    return prediction


def tokens_of(prediction: TextPrediction) -> TextTokens:
    assert prediction.tokens is not None
    return prediction.tokens


@pytest.fixture(scope="module")
def tok() -> Any:
    return tiny_tokenizer()


def test_word_table_is_kept_as_signals_and_reranks_without_the_model(tok: Any) -> None:
    prediction = predict(tagger(tiny_bert(tok, seed=1), tok))
    table = tokens_of(prediction)
    np.testing.assert_array_equal(prediction.signals["token_probs"], table.probs)
    np.testing.assert_array_equal(prediction.signals["token_sentence"], table.sentence)
    np.testing.assert_array_equal(prediction.signals["token_span"], table.span)
    assert "mc_token_probs" not in prediction.signals  # MC dropout is off by default
    plain = Prediction(  # what the store gives back: no tokens, only signals
        item_id=prediction.item_id,
        model_name=prediction.model_name,
        model_version=prediction.model_version,
        suggestions=prediction.suggestions,
        probs=prediction.probs,
        class_names=prediction.class_names,
        signals=dict(prediction.signals),
    )
    assert queue_score(plain, "text") == pytest.approx(queue_score(prediction, "text"))
    assert text_score(plain) == pytest.approx(text_score(prediction))


def test_given_signals_are_not_overwritten() -> None:
    tokens = TextTokens(np.array([[0, 1]]), np.array([[0.5, 0.5]], np.float32),
                        np.array([0]), np.array([-1]), 1, ("O", "B-X"))  # fmt: skip
    mine = np.array([[0.9, 0.1]], np.float32)
    prediction = TextPrediction("i", "m", "v", (), np.zeros((0, 2), np.float32), ("O", "B-X"),
                                signals={"token_probs": mine}, tokens=tokens)  # fmt: skip
    np.testing.assert_array_equal(prediction.signals["token_probs"], mine)
    np.testing.assert_array_equal(prediction.signals["token_span"], [-1])
    unc = {"sentence_uncertainty": np.array([0.2, 0.7])}
    from_signal = TextPrediction("i", "m", "v", (), np.zeros((0, 0), np.float32), signals=unc)
    assert from_signal.sentence_uncertainty is not None
    np.testing.assert_allclose(from_signal.sentence_uncertainty, [0.2, 0.7])


def test_embedding_is_the_mean_final_hidden_state_over_content_tokens(tok: Any) -> None:
    import torch

    model = tiny_bert(tok, seed=2)
    prediction = predict(tagger(model, tok))
    assert prediction.embedding is not None and prediction.embedding.shape == (BERT_HIDDEN,)
    enc = tok(TEXT, return_tensors="pt")
    with torch.inference_mode():
        states = model(**enc, output_hidden_states=True).hidden_states[-1][0, 1:-1]
    expected = states.mean(dim=0).numpy()
    np.testing.assert_allclose(prediction.embedding, expected / np.linalg.norm(expected),
                               atol=1e-5)  # fmt: skip
    windowed = predict(tagger(model, tok, max_length=8, stride=2))
    assert windowed.embedding is not None
    assert float(windowed.embedding @ prediction.embedding) > 0.95  # seams change little


def test_a_wide_encoder_is_projected_to_the_embedding_width(tok: Any) -> None:
    import torch
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok.get_vocab()), hidden_size=320, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64, id2label=dict(enumerate(NER_TAGS)),
                        label2id={t: i for i, t in enumerate(NER_TAGS)})  # fmt: skip
    prediction = predict(tagger(BertForTokenClassification(config).eval(), tok))
    assert prediction.embedding is not None
    assert prediction.embedding.shape == (EMBEDDING_WIDTH,)
    assert np.linalg.norm(prediction.embedding) == pytest.approx(1.0, abs=1e-5)


def test_mc_dropout_passes_shape_differ_and_leave_the_main_pass_alone(tok: Any) -> None:
    model = tiny_bert(tok, seed=3)
    off = predict(tagger(model, tok))
    mc_tagger = tagger(model, tok, mc_passes=4)
    on = predict(mc_tagger)
    passes = on.signals["mc_token_probs"]
    n_words = tokens_of(on).n_words
    assert passes.shape == (4, n_words, len(NER_TAGS)) and passes.dtype == np.float16
    np.testing.assert_allclose(passes.astype(np.float32).sum(axis=2), 1.0, atol=5e-3)
    assert not np.allclose(passes[0], passes[1])  # dropout was on
    np.testing.assert_allclose(tokens_of(on).probs, tokens_of(off).probs, atol=1e-6)
    assert not any(m.training for m in model.modules())  # everything back in eval
    again = predict(mc_tagger)
    np.testing.assert_array_equal(again.signals["mc_token_probs"], passes)  # seeded
    assert 0.0 <= text_score(on, token_score="bald") <= 1.0


def test_mc_passes_option(tok: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mc_passes"):
        tagger(tiny_bert(tok), tok, mc_passes=-1)
    save_tiny_ner(tmp_path / "models" / "tiny")
    base = build_hf_ner(ModelSpec(name="n", family="hf-ner", params={"checkpoint": "tiny"}),
                        tmp_path / "models", "cpu", "auto")  # fmt: skip
    mc = build_hf_ner(ModelSpec(name="n", family="hf-ner",
                                params={"checkpoint": "tiny", "mc_passes": 2}),
                      tmp_path / "models", "cpu", "auto")  # fmt: skip
    assert mc.mc_passes == 2 and base.mc_passes == 0 and mc.version != base.version
    (prediction,) = mc.predict([Item("t", "text", text="anna in paris")])
    assert prediction.signals["mc_token_probs"].shape[:2] == (2, 3)
