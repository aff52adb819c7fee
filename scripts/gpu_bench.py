"""GPU benchmark suite: the ``benchmarks/`` scripts plus three micro-benchmarks, in one pass.

Made for one call of the device machine (docs/gpu.md): every step runs as its own
subprocess under a timeout, inside a total time budget, in priority order, so a
hang or a crash costs one step, not the lease. Results go to ``--out`` as
``gpu_results.md`` (markdown, appended step by step), ``gpu_results.json`` and
``gpu_bench.log`` (every step's full output) and ``summary.txt`` (one line a step).

    scripts/gpu_bench.sh                 # on the device machine (installs .device/wheels first)
    DRY_RUN=1 scripts/gpu_bench.sh       # here: CPU, tiny models, checks the plumbing only

Subcommands (each also runs alone):

    run           the suite (``--dry-run``, ``--budget-s``, ``--only NAME,...``)
    env           versions, the GPU, and two ceilings: bf16 matmul TFLOP/s, device copy GB/s
    sam-encoder   ``SamSegmenter.embed_many`` images/s per variant and batch size
    bert-forward  BERT token-classifier forward sequences/s per batch size (no tokenizer)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = ".device/bert-tokenizer"
MIN_STEP_S = 30.0  # a step is skipped when less than this is left of the budget
CLICK = "benchmarks/click_latency.py"
HTTP = "benchmarks/http_click_latency.py"
NER = "benchmarks/ner_throughput.py"
YOLO = "benchmarks/yolo_predict.py"
SELF = "scripts/gpu_bench.py"


@dataclass(frozen=True)
class Step:
    """One benchmark run: its arguments on the GPU and in a dry run (None: not run there)."""

    name: str
    title: str
    gpu: list[str]
    dry: list[str] | None
    max_s: float


def _click(variant: str, precision: str, *extra: str) -> Step:
    weights = "real weights" if variant == "litemedsam" else "random weights"
    title = f"click latency, {variant} ({weights}), {precision}"
    if "--compile" in extra:
        title += ", torch.compile (batch 1)"
    big = variant == "vit_h" or "--compile" in extra
    gpu = [CLICK, "--variant", variant, "--device", "cuda", "--precision", precision]
    gpu += ["--clicks", "60" if big else "100", "--first-clicks", "2" if big else "3"]
    gpu += list(extra) if "--batch" in extra else ["--batch", "8", *extra]
    dry = [CLICK, "--variant", variant, "--tiny", "--device", "cpu", "--precision", "fp32"]
    dry += ["--clicks", "4", "--first-clicks", "1", "--batch", "2", "--boxes", "2"]
    name = f"click-{variant}-{precision}" + ("-compile" if "--compile" in extra else "")
    max_s = 180.0 if "--compile" in extra else 150.0 if big else 90.0
    return Step(name, title, gpu, None if "--compile" in extra else dry, max_s)


# Priority order: the issues' targets first, then comparisons; fp32 baselines last.
STEPS = [
    Step("env", "environment and ceilings", [SELF, "env"], [SELF, "env", "--device", "cpu"], 60),
    _click("litemedsam", "bf16"),
    Step(
        "http-litemedsam",
        "click over HTTP, LiteMedSAM (real weights), server on loopback",
        f"{HTTP} --device cuda --clicks 100 --first-clicks 3".split(),
        f"{HTTP} --device cpu --clicks 3 --first-clicks 1".split(),
        90,
    ),
    _click("vit_h", "bf16"),
    Step(
        "ner-bert-base",
        "entity tagging, BERT-base (random weights), 128-token sequences, bf16",
        f"{NER} --device cuda --precision bf16 --random-bert base --tokenizer {TOKENIZER_DIR} "
        "--seq-len 128 --sentences 8192 --batch-size 256 --skip-unbatched".split(),
        f"{NER} --device cpu --random-bert tiny --tokenizer {TOKENIZER_DIR} "
        "--seq-len 32 --sentences 32 --batch-size 8 --skip-unbatched".split(),
        150,
    ),
    Step(
        "bert-forward",
        "BERT-base token classifier, forward only, 128 tokens",
        f"{SELF} bert-forward --size base --seq-len 128 --batches 64,256,1024 "
        "--precision bf16,fp16".split(),
        f"{SELF} bert-forward --size tiny --seq-len 32 --batches 2 --precision fp32 "
        "--device cpu".split(),
        60,
    ),
    Step(
        "yolo",
        "detector, yolo11n (real weights), batch 32 (ours: fp16; ultralytics: half=True)",
        f"{YOLO} --device cuda --images 256 --batch 32 --repeats 3".split(),
        f"{YOLO} --device cpu --images 2 --batch 2 --repeats 1".split(),
        120,
    ),
    _click("vit_b", "bf16"),
    Step(
        "sam-encoder",
        "SAM encoder throughput by batch size (embed_many), bf16",
        f"{SELF} sam-encoder --variants litemedsam,vit_b,vit_h --batches 1,8,16 "
        "--precision bf16".split(),
        f"{SELF} sam-encoder --variants vit_b --tiny --batches 1,2 --device cpu "
        "--precision fp32".split(),
        150,
    ),
    _click("vit_b", "bf16", "--compile", "--batch", "1"),
    _click("litemedsam", "fp32"),
    _click("vit_b", "fp32"),
    _click("vit_h", "fp32"),
]


@dataclass
class Outcome:
    name: str
    title: str
    command: str
    status: str  # ok | failed | timeout | skipped
    wall_s: float = 0.0
    rc: int | None = None
    note: str = ""
    stdout: str = field(default="", repr=False)


def _run(argv: list[str], timeout_s: float, env: dict[str, str]) -> tuple[int | None, str, str]:
    """Run in its own process group; on timeout kill the whole group (compile workers too)."""
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err


def _section(k: int, outcome: Outcome, stderr: str) -> str:
    lines = [f"\n### {k}. {outcome.title}\n", f"`{outcome.command}`: {outcome.status}"]
    if outcome.status != "skipped":
        lines[-1] += f", {outcome.wall_s:.1f} s"
    if outcome.note:
        lines[-1] += f" ({outcome.note})"
    body = [line.rstrip() for line in outcome.stdout.strip().splitlines()][-60:]
    if body:
        lines += ["", *body]
    if outcome.status in {"failed", "timeout"}:
        tail = stderr.strip().splitlines()[-20:]
        lines += ["", "```", *tail, "```"]
    return "\n".join(lines) + "\n"


def cmd_run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    unknown = (only or set()) - {s.name for s in STEPS}
    if unknown:
        raise SystemExit(f"unknown step(s) {sorted(unknown)}; known: {[s.name for s in STEPS]}")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    md, log, js = out / "gpu_results.md", out / "gpu_bench.log", out / "gpu_results.json"
    for stale in (md, log, js, out / "summary.txt"):
        stale.unlink(missing_ok=True)
    mode = "DRY RUN (CPU, tiny models: plumbing only, not timings)" if args.dry_run else "GPU"
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    md.write_text(
        f"# GPU benchmark results: {mode}\n\nStarted {started}, budget {args.budget_s:.0f} s\n"
    )
    deadline = time.monotonic() + args.budget_s
    outcomes: list[Outcome] = []
    for k, step in enumerate((s for s in STEPS if only is None or s.name in only), start=1):
        argv = step.dry if args.dry_run else step.gpu
        command = shlex.join(["python", *(argv or step.gpu)])
        outcome = Outcome(step.name, step.title, command, "skipped")
        stderr = ""
        left_s = deadline - time.monotonic()
        if argv is None:
            outcome.note = "not part of the dry run"
        elif left_s < MIN_STEP_S:
            outcome.note = f"budget: {left_s:.0f} s left"
        else:
            timeout_s = min(step.max_s, left_s)
            began = time.monotonic()
            rc, outcome.stdout, stderr = _run([sys.executable, *argv], timeout_s, env)
            outcome.wall_s = time.monotonic() - began
            outcome.rc = rc
            if rc is None:
                outcome.status, outcome.note = "timeout", f"killed after {timeout_s:.0f} s"
            else:
                outcome.status = "ok" if rc == 0 else "failed"
            with log.open("a") as f:
                f.write(f"\n===== {step.name}: {command}\n{outcome.stdout}\n--- stderr\n{stderr}\n")
        outcomes.append(outcome)
        with md.open("a") as f:
            f.write(_section(k, outcome, stderr))
        js.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
        line = f"{step.name:28s} {outcome.status:8s} {outcome.wall_s:6.1f} s {outcome.note}"
        print(line)
        with (out / "summary.txt").open("a") as f:
            f.write(line + "\n")
    failed = [o.name for o in outcomes if o.status in {"failed", "timeout"}]
    print(f"\nresults: {md}\nfailed or timed out: {failed or 'none'}")
    return 1 if failed else 0


# -- micro-benchmarks -----------------------------------------------------------------------


def _device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _median_ms(fn: Callable[[], object], device: str, warmup: int, reps: int) -> float:
    """Median wall time of ``fn`` in ms, synchronising the GPU around every call."""
    import statistics

    import torch

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _table(header: list[str], rows: list[list[Any]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")


def cmd_env(args: argparse.Namespace) -> int:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    device = _device(args.device)
    rows: list[list[Any]] = [["python", platform.python_version()], ["torch", torch.__version__]]
    for name in ("transformers", "ultralytics", "segment-anything", "numpy", "fastapi"):
        try:
            rows.append([name, version(name)])
        except PackageNotFoundError:
            rows.append([name, "missing"])
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        rows += [
            ["GPU", f"{props.name}, cc {props.major}.{props.minor}"],
            ["multiprocessors", props.multi_processor_count],
            ["GPU memory", f"{props.total_memory / 2**30:.0f} GiB"],
            ["CUDA (torch build)", torch.version.cuda],
        ]
        n = args.matmul_n
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        ms = _median_ms(lambda: a @ b, device, warmup=3, reps=10)
        rows.append([f"bf16 matmul {n}^3 (random data)", f"{2 * n**3 / ms / 1e9:.0f} TFLOP/s"])
        x = torch.randn(2**28, device=device)  # 1 GiB of fp32
        y = torch.empty_like(x)
        ms = _median_ms(lambda: y.copy_(x), device, warmup=3, reps=10)
        rows.append(["device copy 1 GiB (read + write)", f"{2 * x.nbytes / ms / 1e6:.0f} GB/s"])
    else:
        rows.append(["device", f"{device} ({torch.get_num_threads()} torch threads)"])
    print("\nEnvironment\n")
    _table(["what", "value"], rows)
    return 0


def cmd_sam_encoder(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from skimage import data

    from benchmarks.click_latency import _default_checkpoint
    from engine.models.sam.embedding_cache import EmbeddingCache
    from engine.models.sam.segmenter import SamSegmenter

    device = _device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    photos = [data.coffee(), data.astronaut(), data.chelsea(), data.rocket()]
    rows: list[list[Any]] = []
    for variant in args.variants.split(","):
        checkpoint = None if args.tiny else _default_checkpoint(variant)
        seg = SamSegmenter(
            variant,
            checkpoint,
            tiny=args.tiny,
            device=device,
            precision=args.precision,
            batch_size=max(batches),
        )
        seg.cache = EmbeddingCache(max_bytes=0)  # nothing kept: every call encodes
        weights = "real" if checkpoint else "tiny random" if args.tiny else "random"
        for batch in batches:
            seg.batch_size = batch
            images = [
                np.ascontiguousarray(np.roll(photos[i % 4], 7 * i + 1, axis=0))
                for i in range(batch)
            ]
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            ms = _median_ms(partial(seg.embed_many, images), device, warmup=2, reps=5)
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0
            speed = f"{batch * 1000 / ms:.1f}"
            rows.append(
                [variant, weights, args.precision, batch, f"{ms:.1f}", speed, f"{peak:.1f}"]
            )
        del seg
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    print(f"\nSAM encoder, SamSegmenter.embed_many (hash + preprocess + encode), {device}\n")
    _table(["variant", "weights", "precision", "batch", "ms / batch", "images/s", "peak GiB"], rows)
    return 0


def cmd_bert_forward(args: argparse.Namespace) -> int:
    import torch
    from transformers import BertConfig, BertForTokenClassification

    from benchmarks.ner_throughput import BERT_SIZES

    device = _device(args.device)
    hidden, layers, heads, intermediate = BERT_SIZES[args.size]
    config = BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        id2label={i: f"TAG{i}" for i in range(9)},
    )
    names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    seq = args.seq_len
    rows: list[list[Any]] = []
    for precision in args.precision.split(","):
        torch.manual_seed(0)
        model: Any = BertForTokenClassification(config)
        model = model.to(device=device, dtype=names[precision]).eval()
        dense = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
        flops_per_seq = 2 * dense * seq + 4 * layers * seq * seq * hidden
        attention = getattr(model.config, "_attn_implementation", "?")
        for batch in (int(b) for b in args.batches.split(",")):
            ids = torch.randint(1000, config.vocab_size, (batch, seq), device=device)
            mask = torch.ones_like(ids)
            forward = partial(model, input_ids=ids, attention_mask=mask)
            with torch.inference_mode():
                ms = _median_ms(forward, device, warmup=3, reps=10)
            speed, tflops = f"{batch * 1000 / ms:,.0f}", f"{batch * flops_per_seq / ms / 1e9:.0f}"
            rows.append([precision, attention, batch, f"{ms:.2f}", speed, tflops])
        del model
    print(f"\nBERT-{args.size} token classifier forward, {seq} tokens, {device}\n")
    _table(["precision", "attention", "batch", "ms / batch", "sequences/s", "TFLOP/s"], rows)
    return 0


def main() -> int:
    if str(REPO) not in sys.path:  # `benchmarks` and `engine` from this checkout
        sys.path.insert(0, str(REPO))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the whole suite")
    run.add_argument("--out", default=os.environ.get("OUT", "gpu_bench_out"))
    run.add_argument("--dry-run", action="store_true", help="CPU and tiny models")
    run.add_argument("--budget-s", type=float, default=450.0, help="total seconds for all steps")
    run.add_argument("--only", default="", help="comma-separated step names")
    env = sub.add_parser("env", help="versions, GPU and ceilings")
    env.add_argument("--device", default="auto")
    env.add_argument("--matmul-n", type=int, default=8192)
    sam = sub.add_parser("sam-encoder", help="encoder images/s by batch size")
    sam.add_argument("--variants", default="litemedsam,vit_b,vit_h")
    sam.add_argument("--batches", default="1,8,16")
    sam.add_argument("--precision", default="bf16")
    sam.add_argument("--device", default="auto")
    sam.add_argument("--tiny", action="store_true")
    bert = sub.add_parser("bert-forward", help="forward-only sequences/s")
    bert.add_argument("--size", default="base")
    bert.add_argument("--seq-len", type=int, default=128)
    bert.add_argument("--batches", default="64,256,1024")
    bert.add_argument("--precision", default="bf16,fp16")
    bert.add_argument("--device", default="auto")
    args = parser.parse_args()
    commands = {
        "run": cmd_run,
        "env": cmd_env,
        "sam-encoder": cmd_sam_encoder,
        "bert-forward": cmd_bert_forward,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
