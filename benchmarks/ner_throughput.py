"""Entity tagging throughput: the engine's HfTokenTagger vs transformers' pipeline.

Same model, same 2,000 CoNLL-2003 test sentences (words joined by spaces), same
process, same threads. The engine sorts windows by length and pads each batch
dynamically; ``pipeline("token-classification")`` runs one text at a time by
default (and pads to the batch's longest with ``batch_size``). Both aggregate
sub-tokens with the ``first`` strategy, and the table reports how often both
return exactly the same entities (a check that they did the same work).

Model: ``--checkpoint DIR`` (e.g. the output of ``labelengine train ner``), else
the bundled MiniLM encoder with a freshly initialised CoNLL head (seed 0).

    python benchmarks/ner_throughput.py [--sentences 2000] [--checkpoint DIR] [--threads N]

Prints a markdown table (sentences/s and the ratio to the pipeline).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.models.hf_ner import HfTokenTagger
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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    texts = [" ".join(s.words) for s in load_conll2003("test", limit=args.sentences)]
    model, tokenizer, label = load_model(args.checkpoint)
    tagger = HfTokenTagger(
        model, tokenizer, name="bench", version="bench", device="cpu", batch_size=args.batch_size
    )
    pipe = pipeline(
        "token-classification",
        model=model,
        tokenizer=tokenizer,
        aggregation_strategy="first",
        device="cpu",
    )
    batch = args.batch_size
    runs = {
        "transformers pipeline (batch_size=1, default)": pipeline_runner(pipe, 1),
        f"transformers pipeline (batch_size={batch})": pipeline_runner(pipe, batch),
        f"engine HfTokenTagger (64-item predict calls, batch {batch})": engine_runner(tagger, 64),
        f"engine HfTokenTagger (one predict call, batch {batch})": engine_runner(
            tagger, len(texts)
        ),
    }
    for run in runs.values():  # warm-up: allocator, kernels, lazy imports
        run(texts[:64])
    with torch.inference_mode():
        results = {name: timed(run, texts) for name, run in runs.items()}
    base_name = next(iter(results))
    base_seconds, base_entities = results[base_name]
    print(f"\n{len(texts)} CoNLL-2003 test sentences, {label}, CPU, "
          f"{torch.get_num_threads()} torch threads\n")  # fmt: skip
    print("| method | seconds | sentences/s | speed-up vs pipeline | same entities |")
    print("|---|---:|---:|---:|---:|")
    for name, (seconds, entities) in results.items():
        print(
            f"| {name} | {seconds:.1f} | {len(texts) / seconds:.0f} | "
            f"{base_seconds / seconds:.2f}x | {agreement(entities, base_entities):.1%} |"
        )


if __name__ == "__main__":
    main()
