"""HfTokenTagger on tiny BERTs built from config with a real fast WordPiece tokenizer."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import BERT_HIDDEN, NER_TAGS, tiny_bert, tiny_tokenizer

from engine.config import REPO_CONFIG_DIR, ModelSpec, load_settings, model_specs
from engine.models.ner.hf import HfTokenTagger, build_hf_ner
from engine.models.ner.uncertainty import TextPrediction, TextTokens
from engine.review.scoring import text_score
from engine.store import Store
from engine.types import Feedback, Item, Prediction, Span

TAGS = NER_TAGS
HIDDEN = BERT_HIDDEN


def context_free_bert(tokenizer: Any, marked: dict[str, str]) -> Any:
    """A tiny BERT whose tag depends only on the token: ``marked`` token -> tag, else ``O``.

    Residual branches and position embeddings are zeroed so each layer is the
    identity; each marked token gets its own direction, read by the classifier.
    """
    import torch

    model = tiny_bert(tokenizer)
    vocab = tokenizer.get_vocab()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".output.dense." in name or "position_embeddings" in name or "token_type" in name:
                param.zero_()

        def direction(k: int) -> torch.Tensor:
            v = torch.zeros(HIDDEN)
            v[2 * k], v[2 * k + 1] = 1.0, -1.0
            return v

        words = model.bert.embeddings.word_embeddings.weight
        words[:] = direction(0)
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.weight[TAGS.index("O")] = 10 * direction(0)
        for k, (token, tag) in enumerate(marked.items(), start=1):
            words[vocab[token]] = direction(k)
            model.classifier.weight[TAGS.index(tag)] += 10 * direction(k)
    return model


def forced_bert(tokenizer: Any, tag: str) -> Any:
    """A tiny BERT that predicts ``tag`` for every token."""
    import torch

    model = tiny_bert(tokenizer)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[TAGS.index(tag)] = 8.0
    return model


def tagger(model: Any, tokenizer: Any, **options: Any) -> HfTokenTagger:
    return HfTokenTagger(model, tokenizer, name="tiny", version="v1", device="cpu", **options)


def text_item(text: str, item_id: str = "t1") -> Item:
    return Item(item_id=item_id, kind="text", text=text)


def labeled_spans(prediction: Prediction) -> list[tuple[str, Span]]:
    """``(label, span)`` of every suggestion; every region must be a ``Span``."""
    out = [(s.label, s.region) for s in prediction.suggestions if isinstance(s.region, Span)]
    assert len(out) == len(prediction.suggestions)
    return out


def word_table(prediction: Prediction) -> TextTokens:
    assert isinstance(prediction, TextPrediction) and prediction.tokens is not None
    return prediction.tokens


@pytest.fixture(scope="module")
def tok() -> Any:
    return tiny_tokenizer()


ODD_TEXT = "Héllo  wörld 😀   São Paulo,\tcafé!"


def test_offsets_map_back_to_exact_substrings(tok: Any) -> None:
    prediction = tagger(forced_bert(tok, "B-PER"), tok).predict([text_item(ODD_TEXT)])[0]
    spans = [span for _, span in labeled_spans(prediction)]
    assert [ODD_TEXT[s.start : s.end] for s in spans] == [
        "Héllo", "wörld", "😀", "São", "Paulo", ",", "café", "!",
    ]  # fmt: skip
    assert all(s.text == ODD_TEXT[s.start : s.end] for s in spans)
    assert {s.label for s in prediction.suggestions} == {"PER"}


def test_inside_without_begin_opens_one_span_over_all_words(tok: Any) -> None:
    prediction = tagger(forced_bert(tok, "I-LOC"), tok).predict([text_item(ODD_TEXT)])[0]
    ((label, span),) = labeled_spans(prediction)
    assert span.text == ODD_TEXT  # from the first word to the last, spaces kept
    assert label == "LOC" and prediction.suggestions[0].score > 0.99
    assert prediction.probs.shape == (1, len(TAGS))
    assert prediction.probs[0].argmax() == TAGS.index("I-LOC")


def test_windowing_merges_a_span_across_the_seam(tok: Any) -> None:
    model = context_free_bert(tok, {"paris": "I-PER", "new": "B-LOC", "york": "I-LOC"})
    text = "the in the " * 3 + "paris " * 9 + "the in new york the " + "in " * 5
    whole = tagger(model, tok, max_length=128).predict([text_item(text)])[0]
    windowed = tagger(model, tok, max_length=8, stride=2).predict([text_item(text)])[0]
    expected = [("PER", " ".join(["paris"] * 9)), ("LOC", "new york")]
    assert [(label, span.text) for label, span in labeled_spans(whole)] == expected
    assert [(label, span.text) for label, span in labeled_spans(windowed)] == expected
    np.testing.assert_allclose(word_table(windowed).probs, word_table(whole).probs, atol=1e-4)


def test_batched_length_sorted_predictions_equal_one_by_one(tok: Any) -> None:
    model = tiny_bert(tok, seed=3)
    texts = ["anna in paris", "the " * 40 + "new york", "x", "São Paulo é grande " * 6]
    items = [text_item(t, f"t{i}") for i, t in enumerate(texts)]
    batched = tagger(model, tok, batch_size=3, max_length=32, stride=8).predict(items)
    single = [tagger(model, tok, batch_size=1, max_length=32, stride=8).predict([it])[0]
              for it in items]  # fmt: skip
    assert [p.item_id for p in batched] == [it.item_id for it in items]
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_allclose(word_table(a).probs, word_table(b).probs, atol=1e-5)
        assert labeled_spans(a) == labeled_spans(b)


@pytest.mark.parametrize("aggregation", ["first", "average", "max"])
def test_word_rows_are_distributions_for_every_aggregation(tok: Any, aggregation: str) -> None:
    tg = tagger(tiny_bert(tok, seed=1), tok, aggregation=aggregation)
    prediction = tg.predict([text_item("Anna lives in Paris, France.")])[0]
    table = word_table(prediction)
    words = ["Anna", "lives", "in", "Paris", ",", "France", "."]
    assert ["Anna lives in Paris, France."[a:b] for a, b in table.offsets_chars] == words
    np.testing.assert_allclose(table.probs.sum(axis=1), 1.0, atol=1e-5)
    assert 0.0 <= text_score(prediction) <= 1.0


def test_sentences_without_entities_still_carry_uncertainty(tok: Any) -> None:
    model = context_free_bert(tok, {"paris": "I-PER"})
    prediction = tagger(model, tok).predict([text_item("Paris in. The the the.")])[0]
    assert word_table(prediction).n_sentences == 2
    assert [span.text for _, span in labeled_spans(prediction)] == ["Paris"]
    assert text_score(prediction) < 0.05  # a sure model: every word near one-hot
    unsure = tagger(tiny_bert(tok, seed=2), tok).predict([text_item("The the the.")])[0]
    assert text_score(unsure) > 0.5  # random head: high entropy even with no entity


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_refused(tok: Any, text: str) -> None:
    with pytest.raises(ValueError, match="empty text"):
        tagger(tiny_bert(tok), tok).predict([text_item(text)])


def test_text_over_max_chars_is_refused_with_the_limit(tok: Any) -> None:
    with pytest.raises(ValueError, match="max_chars=50"):
        tagger(tiny_bert(tok), tok, max_chars=50).predict([text_item("word " * 20)])


def test_image_items_are_refused(tok: Any) -> None:
    with pytest.raises(ValueError, match="reads text"):
        tagger(tiny_bert(tok), tok).predict([Item("i", "image", uri="a.png")])


def test_bad_options_are_refused(tok: Any) -> None:
    model = tiny_bert(tok)
    with pytest.raises(ValueError, match="aggregation"):
        tagger(model, tok, aggregation="mean")
    with pytest.raises(ValueError, match="stride"):
        tagger(model, tok, max_length=8, stride=6)
    with pytest.raises(ValueError, match="max_length"):
        tagger(model, tok, max_length=1000)


def test_missing_checkpoint_error_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="nowhere"):
        HfTokenTagger.from_pretrained(missing)
    with pytest.raises(ValueError, match="never downloaded"):
        HfTokenTagger.from_pretrained("some-org/not-a-cached-model-xyz")


def test_builder_loads_a_saved_checkpoint_under_the_models_dir(tok: Any, tmp_path: Path) -> None:
    checkpoint = tmp_path / "models" / "tiny-ner-v1"
    tiny_bert(tok).save_pretrained(checkpoint)
    tok.save_pretrained(checkpoint)
    spec = ModelSpec(name="tiny-ner", family="hf-ner", params={"checkpoint": "tiny-ner-v1"})
    model = build_hf_ner(spec, tmp_path / "models", "cpu", "auto")
    assert model.version.startswith("tiny-ner-")
    (prediction,) = model.predict([text_item("Anna in Paris")])
    assert prediction.model_version == model.version
    other = ModelSpec(name="tiny-ner", family="hf-ner", params={"checkpoint": "tiny-ner-v1",
                                                                 "stride": 8})  # fmt: skip
    assert build_hf_ner(other, tmp_path / "models", "cpu", "auto").version != model.version
    with pytest.raises(ValueError, match="labelengine train ner"):
        build_hf_ner(ModelSpec(name="x", family="hf-ner", params={"checkpoint": "gone"}),
                     tmp_path / "models", "cpu", "auto")  # fmt: skip
    with pytest.raises(ValueError, match="unknown param"):
        build_hf_ner(ModelSpec(name="x", family="hf-ner", params={"checkpoint": "tiny-ner-v1",
                                                                  "beam": 3}),
                     tmp_path / "models", "cpu", "auto")  # fmt: skip


@pytest.mark.gpu
def test_half_precision_on_gpu_matches_fp32(tok: Any) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model = tiny_bert(tok, seed=4)
    items = [text_item("Anna lives in Paris, France.")]
    fp32 = tagger(model, tok, precision="fp32").predict(items)[0]
    gpu = HfTokenTagger(tiny_bert(tok, seed=4), tok, name="t", version="v", device="cuda")
    half = gpu.predict(items)[0]
    assert gpu.dtype in (torch.float16, torch.bfloat16)
    np.testing.assert_allclose(word_table(half).probs, word_table(fp32).probs, atol=2e-2)


def test_repo_spec_asks_for_training_when_the_model_is_missing(tmp_path: Path) -> None:
    spec = model_specs(REPO_CONFIG_DIR)["minilm-ner"]
    assert spec.family == "hf-ner" and spec.params["checkpoint"] == "minilm-ner"
    with pytest.raises(ValueError, match="labelengine train ner"):
        build_hf_ner(spec, tmp_path, "cpu", "auto")


# -- a MiniLM tagger trained here ----------------------------------------------------

PEOPLE = ("Angela Merkel", "Emmanuel Macron", "Olaf Scholz", "Mark Rutte", "Pedro Sanchez")
PLACES = ("Paris", "Berlin", "Madrid", "Vienna", "Lisbon", "Brussels")
TEMPLATES = (
    "{a} met {b} in {place} on Monday.",
    "{a} flew to {place} to see {b}.",
    "In {place}, {a} spoke with {b} about trade.",
    "{a} and {b} visited {place} last week.",
)


def _review_sentences(store: Store) -> int:
    """Reviewed text items (PER / LOC spans accepted), as an annotator leaves them."""
    pairs = itertools.permutations(PEOPLE, 2)
    for n, ((a, b), template) in enumerate(zip(pairs, itertools.cycle(TEMPLATES))):
        place = PLACES[n % len(PLACES)]
        text = template.format(a=a, b=b, place=place)
        item_id = f"review-{n}"
        store.add_items([Item(item_id, "text", text=text)], [None])
        for k, (name, label) in enumerate(((a, "PER"), (b, "PER"), (place, "LOC"))):
            start = text.index(name)
            span = Span(start, start + len(name))
            store.record_feedback(Feedback(item_id, "edit", f"{n}-{k}", label=label, region=span))
        store.record_feedback(Feedback(item_id, "accept", f"{n}-done"))
    return n + 1


@pytest.fixture(scope="module")
def trained_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir holding ``minilm-ner`` trained by a short ``train-ner`` job (the job
    `labelengine train ner` runs) on reviewed sentences; seconds on a CPU."""
    from engine.training.ner import create_ner_training_job, run_ner_training_job

    root = tmp_path_factory.mktemp("minilm-ner")
    settings = load_settings(data_dir=root / "data", models_dir=root / "models")
    store = Store(settings.resolved_database_url)
    assert _review_sentences(store) == 20
    options = {"source": "store", "epochs": 8.0, "batch_size": 8, "learning_rate": 3e-4,
               "device": "cpu"}  # fmt: skip
    job = create_ner_training_job(store, options)
    done = run_ner_training_job(store, settings, job.job_id)
    store.close()
    assert done.state == "succeeded", done.message
    assert (settings.resolved_models_dir / "minilm-ner").is_dir()
    return settings.resolved_models_dir


@pytest.mark.slow
def test_trained_minilm_tags_people_and_places(trained_models_dir: Path) -> None:
    """The model a `labelengine train ner` job produced, loaded through the repo's spec."""
    model = build_hf_ner(
        model_specs(REPO_CONFIG_DIR)["minilm-ner"], trained_models_dir, "cpu", "auto"
    )
    text = "Angela Merkel met Emmanuel Macron in Paris on Tuesday."
    (prediction,) = model.predict([text_item(text)])
    found = {(label, span.text) for label, span in labeled_spans(prediction)}
    assert {("PER", "Angela Merkel"), ("PER", "Emmanuel Macron"), ("LOC", "Paris")} <= found
    assert 0.0 <= text_score(prediction) <= 1.0
