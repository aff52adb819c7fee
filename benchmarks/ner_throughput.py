"""Entity tagging throughput: the engine's HfTokenTagger vs transformers' pipeline.

Same model, same 2,000 CoNLL-2003 test sentences (words joined by spaces), same
process, same threads. The engine sorts windows by length and pads each batch
dynamically; ``pipeline("token-classification")`` runs one text at a time by
default (and pads to the batch's longest with ``batch_size``). Both aggregate
sub-tokens with the ``first`` strategy, and the table reports how often both
return exactly the same entities (a check that they did the same work).

Model: ``--checkpoint DIR`` (e.g. the output of ``labelengine train ner``), else
the bundled MiniLM encoder with a freshly initialised CoNLL head (seed 0), or
``--random-bert base`` (BERT-base-sized, random weights: times the same as a
trained one) with the bundled BERT uncased tokenizer or ``--tokenizer DIR``.
``--seq-len N`` replaces the CoNLL sentences with ``--sentences`` synthetic
texts of random whole-word vocabulary entries, each exactly one N-token window
(special tokens included).

    python benchmarks/ner_throughput.py [--sentences 2000] [--checkpoint DIR] [--threads N]
    python benchmarks/ner_throughput.py --device cuda --precision bf16 --random-bert base \
        --seq-len 128 --sentences 8192 --batch-size 256 --skip-unbatched

Prints a markdown table (sentences/s and the ratio to the pipeline).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.models.ner.hf import HfTokenTagger
from engine.training.conll import CONLL_TAGS, load_conll2003
from engine.training.ner import bundled_encoder_dir
from engine.types import Item, Span

Entities = list[set[tuple[int, int, str]]]
Runner = Callable[[list[str]], Entities]


def load_model(checkpoint: Path | None) -> tuple[Any, Any, str]:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    source = checkpoint or bundled_encoder_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    if checkpoint is not None:
        model = AutoModelForTokenClassification.from_pretrained(source, local_files_only=True)
        return model.eval(), tokenizer, f"trained ({checkpoint.name})"
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(
        source,
        local_files_only=True,
        num_labels=len(CONLL_TAGS),
        id2label=dict(enumerate(CONLL_TAGS)),
        label2id={t: i for i, t in enumerate(CONLL_TAGS)},
    )
    return model.eval(), tokenizer, "MiniLM + fresh CoNLL head"


BERT_SIZES = {  # hidden, layers, heads, intermediate
    "base": (768, 12, 12, 3072),
    "tiny": (64, 2, 2, 128),
}


def random_bert(size: str, tokenizer_dir: Path | None) -> tuple[Any, Any, str]:
    """A BERT token classifier of the named size with random weights (seed 0)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    hidden, layers, heads, intermediate = BERT_SIZES[size]
    source = tokenizer_dir or bundled_encoder_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
        id2label=dict(enumerate(CONLL_TAGS)),
        label2id={t: i for i, t in enumerate(CONLL_TAGS)},
    )
    torch.manual_seed(0)
    model = BertForTokenClassification(config)
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    return model.eval(), tokenizer, f"BERT-{size} ({n_params:.0f}M params, random weights)"


def synthetic_texts(tokenizer: Any, count: int, seq_len: int, seed: int = 0) -> list[str]:
    """``count`` texts of random vocabulary words that each tokenize to one ``seq_len`` window."""
    import numpy as np

    n_words = seq_len - tokenizer.num_special_tokens_to_add(pair=False)
    if n_words < 1:
        raise ValueError(f"--seq-len {seq_len} leaves no room for words")
    vocab = tokenizer.get_vocab()
    words = sorted(w for w in vocab if w.isascii() and w.isalpha() and w.islower() and len(w) > 2)
    if not words:
        raise ValueError("the tokenizer's vocabulary has no plain lowercase words")
    rng = np.random.default_rng(seed)
    texts = [" ".join(words[i] for i in rng.integers(0, len(words), n_words)) for _ in range(count)]
    lengths = {len(ids) for ids in tokenizer(texts[:16], add_special_tokens=False)["input_ids"]}
    if lengths != {n_words}:
        raise ValueError(
            f"synthetic texts tokenize to {sorted(lengths)} tokens, not {n_words}: "
            "--seq-len needs a WordPiece vocabulary of whole words (e.g. BERT uncased)"
        )
    return texts


def timed(run: Runner, texts: list[str]) -> tuple[float, Entities]:
    started = time.perf_counter()
    out = run(texts)
    return time.perf_counter() - started, out


def engine_runner(tagger: HfTokenTagger, chunk: int) -> Runner:
    """``chunk`` items per ``predict`` call (a pre-label job hands the model batches)."""

    def run(texts: list[str]) -> Entities:
        items = [Item(f"s{i}", "text", text=t) for i, t in enumerate(texts)]
        found: Entities = []
        for begin in range(0, len(items), chunk):
            for p in tagger.predict(items[begin : begin + chunk]):
                spans = [(s.region, s.label) for s in p.suggestions]
                found.append({(r.start, r.end, lab) for r, lab in spans if isinstance(r, Span)})
        return found

    return run


def pipeline_runner(pipe: Any, batch_size: int) -> Runner:
    def run(texts: list[str]) -> Entities:
        outputs = pipe(texts, batch_size=batch_size)
        return [{(e["start"], e["end"], e["entity_group"]) for e in out} for out in outputs]

    return run


def agreement(a: Entities, b: Entities) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / max(len(a), 1)


def main() -> None:
    import torch
    from transformers import pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (both sides)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (both sides)")
    parser.add_argument("--precision", default="auto", help="auto (fp32 on CPU), fp32, bf16, fp16")
    parser.add_argument("--random-bert", choices=sorted(BERT_SIZES), default=None)
    parser.add_argument("--tokenizer", type=Path, default=None, help="for --random-bert")
    parser.add_argument("--seq-len", type=int, default=0, help="synthetic texts of N tokens")
    parser.add_argument(
        "--skip-unbatched", action="store_true", help="leave out the pipeline's batch_size=1 run"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.random_bert and args.checkpoint:
        parser.error("--random-bert and --checkpoint exclude each other")

    if args.random_bert:
        model, tokenizer, label = random_bert(args.random_bert, args.tokenizer)
    else:
        model, tokenizer, label = load_model(args.checkpoint)
    if args.seq_len:
        texts = synthetic_texts(tokenizer, args.sentences, args.seq_len)
        source, unit = f"synthetic texts of {args.seq_len} tokens", "sequences"
    else:
        texts = [" ".join(s.words) for s in load_conll2003("test", limit=args.sentences)]
        source, unit = "CoNLL-2003 test sentences", "sentences"
    tagger = HfTokenTagger(
        model,
        tokenizer,
        name="bench",
        version="bench",
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
    )
    pipe = pipeline(
        "token-classification",
        model=tagger.model,
        tokenizer=tokenizer,
        aggregation_strategy="first",
        device=tagger.device,
    )
    batch = args.batch_size
    runs: dict[str, Runner] = {}
    if not args.skip_unbatched:
        runs["transformers pipeline (batch_size=1, default)"] = pipeline_runner(pipe, 1)
    runs |= {
        f"transformers pipeline (batch_size={batch})": pipeline_runner(pipe, batch),
        f"engine HfTokenTagger (64-item predict calls, batch {batch})": engine_runner(tagger, 64),
        f"engine HfTokenTagger (one predict call, batch {batch})": engine_runner(
            tagger, len(texts)
        ),
    }
    for run in runs.values():  # warm-up: allocator, kernels, lazy imports
        run(texts[: max(64, batch)])
    with torch.inference_mode():
        results = {name: timed(run, texts) for name, run in runs.items()}
    base_name = next(iter(results))
    base_seconds, base_entities = results[base_name]
    where = "CPU" if tagger.device == "cpu" else f"{tagger.device} {str(tagger.dtype)[6:]}"
    print(f"\n{len(texts)} {source}, {label}, {where}, "
          f"{torch.get_num_threads()} torch threads\n")  # fmt: skip
    print(f"| method | seconds | {unit}/s | speed-up vs pipeline | same entities |")
    print("|---|---:|---:|---:|---:|")
    for name, (seconds, entities) in results.items():
        print(
            f"| {name} | {seconds:.2f} | {len(texts) / seconds:.0f} | "
            f"{base_seconds / seconds:.2f}x | {agreement(entities, base_entities):.1%} |"
        )


if __name__ == "__main__":
    main()
