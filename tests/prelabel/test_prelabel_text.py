"""Text items through the pre-label job: decode checks, taggers in the actor, the real job.

Stages are called directly (spaCy's small English pipeline, a tiny random
BERT saved as a checkpoint); one run of the real job on the session's Ray
node (slow) pre-labels a JSONL backlog with the tiny BERT.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from tiny_models import save_tiny_ner

from engine.config import ConfigError, ModelSpec, Settings, load_settings
from engine.ingest import ingest
from engine.models.registry import build_model
from engine.prelabel.codec import decode_prediction, objects
from engine.prelabel.job import create_prelabel_job, plan_items, run_prelabel_job
from engine.prelabel.plan import resolve_version
from engine.prelabel.stages import Predictor
from engine.prelabel.text import decode_text_batch
from engine.review.queue import next_item
from engine.review.scoring import text_score
from engine.store import Store
from engine.types import Item, Span

if TYPE_CHECKING:
    from conftest import RayCluster

SPACY = {"name": "spacy-sm", "family": "spacy", "params": {"batch_size": 8, "max_chars": 60}}
TINY_NER = {"name": "tiny-ner", "family": "hf-ner", "params": {"checkpoint": "tiny-ner"}}
SENTENCES = [
    "Anna lives in Paris.",
    "The new york office opened in the spring.",
    "in in in the the",
    "Paris, New York and Anna. The end.",
]


def _save_tiny_ner(models_dir: Path) -> None:
    save_tiny_ner(models_dir / "tiny-ner", seed=0)


def _text_batch(texts: list[str]) -> dict[str, np.ndarray]:
    return {
        "item_id": objects([f"t{k}" for k in range(len(texts))]),
        "text": objects(texts),
        "error": objects([""] * len(texts)),
    }


# -- decode --------------------------------------------------------------------------


def test_decode_refuses_empty_invalid_and_overlong_texts_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("Héllo wörld 🙂", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("hidden", encoding="utf-8")
    rows = [
        (b"Anna in Paris.", ""),
        (b"", ""),
        (b" \n\t", ""),
        (b"x" * 41, ""),
        ("bad \udc80".encode("utf-8", "surrogatepass"), ""),  # a lone surrogate
        (b"", str(tmp_path / "ok.txt")),
        (b"", str(tmp_path / "latin1.txt")),
        (b"", str(outside)),
    ]
    batch = {
        "item_id": objects([f"i{k}" for k in range(len(rows))]),
        "text": objects([data for data, _ in rows]),
        "uri": objects([uri for _, uri in rows]),
    }
    out = decode_text_batch(batch, roots=[str(tmp_path)], max_text_chars=40, max_file_bytes=1000)
    assert list(out["item_id"]) == list(batch["item_id"])
    assert out["text"][0] == "Anna in Paris." and out["error"][0] == ""
    assert out["text"][5] == "Héllo wörld 🙂" and out["error"][5] == ""
    errors = list(out["error"])
    assert "TextDecodeError" in errors[1] and "empty text" in errors[1] and "empty" in errors[2]
    assert "41 characters, over max_text_chars=40" in errors[3]
    assert "not valid UTF-8: byte 0xed at offset 4" in errors[4]
    assert "latin1.txt is not valid UTF-8: byte 0xe9 at offset 3" in errors[6]
    assert "outside the data roots" in errors[7]
    assert all(out["text"][k] == "" for k in (1, 2, 3, 4, 6, 7))


def test_plan_reads_text_items_only_with_their_text(store: Store, tmp_path: Path) -> None:
    manifest = tmp_path / "texts.jsonl"
    lines = [{"id": "a", "text": "Anna in Paris."}, {"id": "b", "text": ""}]
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    assert not ingest(store, str(manifest), [tmp_path]).errors
    store.add_items([Item("img", "image", uri=str(tmp_path / "x.png"))], [None])
    todo, skipped = plan_items(store, "job", "v1", None, "text")
    assert skipped == 0
    assert todo == [
        {"item_id": "a", "uri": "", "text": b"Anna in Paris."},
        {"item_id": "b", "uri": "", "text": b""},
    ]


# -- taggers in the actor --------------------------------------------------------------


def test_spacy_tags_in_the_actor_and_refuses_per_item(tmp_path: Path) -> None:
    spec = ModelSpec.model_validate(SPACY)
    version = resolve_version(spec, tmp_path)
    predictor = Predictor(
        SPACY, str(tmp_path), kind="text", torch_threads=1, expected_version=version
    )
    batch = _text_batch(["Anna moved to Paris last May.", "x " * 40, "fine text"])
    batch["error"][2] = "TextDecodeError: earlier"
    out = predictor(batch)
    assert out["error"][0] == "" and "over max_chars=60" in out["error"][1]
    assert out["error"][2] == "TextDecodeError: earlier"
    prediction = decode_prediction(out["meta"][0], out["probs"][0], out["extras"][0])
    spans = {(s.label, s.region.text) for s in prediction.suggestions if isinstance(s.region, Span)}
    assert ("GPE", "Paris") in spans and prediction.model_version == version
    # spaCy's beam scores the text (its sentence uncertainty travels with the prediction)
    assert 0.0 < out["score"][0] < 1.0
    assert out["score"][0] == pytest.approx(text_score(prediction))
    assert "sentence_uncertainty" in prediction.signals and prediction.embedding is not None


def test_tagger_versions_resolve_as_the_builders_make_them(tmp_path: Path) -> None:
    _save_tiny_ner(tmp_path)
    spec = ModelSpec.model_validate(TINY_NER)
    assert resolve_version(spec, tmp_path) == build_model(spec, tmp_path, device="cpu").version
    missing = ModelSpec(name="gone", family="hf-ner", params={"checkpoint": "gone"})
    with pytest.raises(ConfigError, match="labelengine train ner"):
        resolve_version(missing, tmp_path)


def test_tagger_scores_from_its_word_rows_in_the_actor(tmp_path: Path) -> None:
    _save_tiny_ner(tmp_path)
    predictor = Predictor(TINY_NER, str(tmp_path), kind="text", device="cpu", torch_threads=1)
    out = predictor(_text_batch(SENTENCES))
    direct = predictor.model.predict(
        [Item(f"t{k}", "text", text=t) for k, t in enumerate(SENTENCES)]
    )
    for k, prediction in enumerate(direct):
        assert out["score"][k] == pytest.approx(text_score(prediction))
        stored = decode_prediction(out["meta"][k], out["probs"][k], out["extras"][k])
        for s in stored.suggestions:
            assert isinstance(s.region, Span)
            assert SENTENCES[k][s.region.start : s.region.end] == s.region.text
    assert len(set(out["score"].tolist())) > 1


# -- the real job on Ray (slow) ------------------------------------------------------

JOB_YAML = (
    "executor: ray\nrows_per_block: 2\ndecode_batch_size: 2\nwrite_batch_size: 2\n"
    "torch_threads: 1\nmax_text_chars: 300\n"
)


@pytest.fixture(scope="module")
def ray_base(
    tmp_path_factory: pytest.TempPathFactory, ray_cluster: RayCluster
) -> tuple[Path, Settings]:
    """A JSONL backlog, configs and the tiny BERT; the job runs on the session's Ray node."""
    root = tmp_path_factory.mktemp("text")
    models = root / "configs" / "models"
    models.mkdir(parents=True)
    (models / "tiny-ner.yaml").write_text(json.dumps(TINY_NER), encoding="utf-8")
    (root / "configs" / "jobs").mkdir()
    (root / "configs" / "jobs" / "prelabel.yaml").write_text(JOB_YAML, encoding="utf-8")
    _save_tiny_ner(root / "models")
    rows: list[dict[str, Any]] = [{"id": f"s{k}", "text": t} for k, t in enumerate(SENTENCES)]
    rows += [{"id": "empty", "text": ""}, {"id": "long", "text": "Paris is big. " * 30}]
    (root / "texts.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    settings = load_settings(
        data_dir=root / "data",
        data_roots=[root],
        config_dir=root / "configs",
        models_dir=root / "models",
        ray_num_cpus=2,
    )
    return root, settings


@pytest.mark.slow
def test_text_job_stores_spans_and_scores_and_the_queue_ranks_them(
    ray_base: tuple[Path, Settings],
) -> None:
    root, settings = ray_base
    store = Store(settings.resolved_database_url)
    assert not ingest(store, str(root / "texts.jsonl"), settings.resolved_data_roots).errors
    job = create_prelabel_job(store, settings, model_name="tiny-ner")
    final = run_prelabel_job(store, settings, job.job_id)
    assert final.state == "succeeded", final.message
    assert (final.total, final.done, final.failed) == (6, 4, 2)
    errors = {e.item_id: e.message for e in store.job_errors(job.job_id)}
    assert set(errors) == {"empty", "long"}
    assert "empty text" in errors["empty"] and "over max_text_chars=300" in errors["long"]

    version = str(final.model_version)
    tagger = build_model(ModelSpec.model_validate(TINY_NER), root / "models", device="cpu")
    assert tagger.version == version
    expected: dict[str, float] = {}
    n_spans = 0
    for k, text in enumerate(SENTENCES):
        records = store.suggestions_for(f"s{k}", model_version=version)
        for record in records:
            region = record.suggestion.region
            assert isinstance(region, Span) and text[region.start : region.end] == region.text
        n_spans += len(records)
        (prediction,) = tagger.predict([Item(f"s{k}", "text", text=text)])
        expected[f"s{k}"] = text_score(prediction)
    assert n_spans > 0

    served = []
    for k in range(6):
        lease = next_item(store, f"annotator-{k}", lease_seconds=60)
        if lease is None:
            break
        served.append(lease.item_id)
        assert lease.score == pytest.approx(expected[lease.item_id], rel=1e-4)  # stored score
    assert served == sorted(expected, key=lambda i: -expected[i])  # failed items never served
    store.close()
