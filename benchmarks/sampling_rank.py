"""Benchmark: score + reduce + rank a 1M-item backlog, and k-center greedy.

Run: ``.venv/bin/python benchmarks/sampling_rank.py`` (single-threaded BLAS;
``--threads`` to change). Prints a markdown table for docs/benchmarks.md.

1. Ranking: 1,000,000 items with a ragged number of regions each (Poisson,
   mean 3, so some items have none), region class rows ``[n_regions, 10]``
   float32. Ours: ``least_confidence`` (with validation) -> per-item ``max``
   (empty items -> 1.0) -> ``rank``. Alternative: the obvious Python loop
   (per item ``max(1 - np.max(row))`` over its rows, then ``sorted`` with a
   key) on a subset, scaled linearly to the full size.
2. Diversity: k-center greedy picking 100 of 100,000 x 128 float32
   embeddings. Ours: incremental ``min`` distance update. Alternative: the
   textbook loop that recomputes distances to all picked centers each step.
3. Every non-diverse policy score on the same backlog (``margin``,
   ``entropy``, the detector default ``max_c binary_entropy``, ``topk_mean``
   reduction): score + reduce + rank, each must stay <= 1 s.
4. The queue's head under a diverse policy (``engine.sampling.head``):
   ``kcenter`` and ``hybrid`` choosing ``--head-picks`` of a head of
   ``--head-size`` x 256 (the stored embedding width); alternative: k-center
   ordering the whole head (every item picked), the naive reading of
   "k-center over the head".
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n-items", type=int, default=1_000_000)
    parser.add_argument("--subset", type=int, default=20_000, help="items for the Python loop")
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--kc-points", type=int, default=100_000)
    parser.add_argument("--kc-dim", type=int, default=128)
    parser.add_argument("--kc-picks", type=int, default=100)
    parser.add_argument("--head-size", type=int, default=10_000)
    parser.add_argument("--head-picks", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _make_backlog(np: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    rng = np.random.default_rng(args.seed)
    counts = rng.poisson(3.0, size=args.n_items)
    offsets = np.zeros(args.n_items + 1, dtype=np.intp)
    np.cumsum(counts, out=offsets[1:])
    logits = rng.normal(0, 2, size=(int(offsets[-1]), args.n_classes)).astype(np.float32)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, offsets


def bench_rank(np: Any, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    from engine.sampling import least_confidence, rank, reduce_groups

    probs, offsets = _make_backlog(np, args)

    def ours() -> Any:
        region = least_confidence(probs)
        item = reduce_groups(region, offsets=offsets, reduction="max", empty_value=1.0)
        return rank(item)

    stage_score, region = _best_of(lambda: least_confidence(probs), args.repeats)
    stage_reduce, item = _best_of(
        lambda: reduce_groups(region, offsets=offsets, empty_value=1.0), args.repeats
    )
    stage_rank, _ = _best_of(lambda: rank(item), args.repeats)
    total, _ = _best_of(ours, args.repeats)

    m = args.subset
    per_item = [list(probs[offsets[i] : offsets[i + 1]]) for i in range(m)]

    def loop() -> list[int]:
        scores = [max((float(1 - np.max(row)) for row in rows), default=1.0) for rows in per_item]
        return sorted(range(m), key=lambda i: -scores[i])

    loop_s, loop_order = _best_of(loop, 1)
    sub = reduce_groups(
        least_confidence(probs[: offsets[m]]), offsets=offsets[: m + 1], empty_value=1.0
    )
    if rank(sub).tolist() != loop_order:
        raise RuntimeError("vectorised ranking disagrees with the Python loop")
    scaled = loop_s * args.n_items / m
    n_regions = int(offsets[-1])
    label = f"{args.n_items:,} items / {n_regions:,} regions x {args.n_classes}"
    return [
        (f"score (least confidence, {n_regions:,} x {args.n_classes})", stage_score, float("nan")),
        ("reduce per item (max, ragged)", stage_reduce, float("nan")),
        (f"rank {args.n_items:,}", stage_rank, float("nan")),
        (f"score + reduce + rank, {label}", total, scaled),
    ]


def bench_k_center(np: Any, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    from engine.sampling import k_center_greedy

    rng = np.random.default_rng(args.seed + 1)
    points = rng.normal(size=(args.kc_points, args.kc_dim)).astype(np.float32)
    k = args.kc_picks

    def naive() -> list[int]:
        sq = np.einsum("ij,ij->i", points, points)
        picks = [0]
        for _ in range(k - 1):
            centers = points[picks]
            d = sq[:, None] + np.einsum("ij,ij->i", centers, centers)[None] - 2 * points @ centers.T
            d = d.min(axis=1)
            d[picks] = -np.inf
            picks.append(int(np.argmax(d)))
        return picks

    ours_s, ours = _best_of(lambda: k_center_greedy(points, k, start=0), args.repeats)
    naive_s, expected = _best_of(naive, 1)
    agree = sum(a == b for a, b in zip(ours.tolist(), expected, strict=True))
    label = f"k-center greedy {k} of {args.kc_points:,} x {args.kc_dim} ({agree}/{k} same picks)"
    return [(label, ours_s, naive_s)]


def bench_policies(np: Any, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    from engine.sampling import binary_entropy, entropy, margin, rank, reduce_groups

    probs, offsets = _make_backlog(np, args)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("margin", lambda: margin(probs)),
        ("entropy", lambda: entropy(probs)),
        ("max_c binary entropy (detector auto)", lambda: binary_entropy(probs).max(axis=1)),
    ]
    rows = []
    for name, score in cases:

        def run(score: Callable[[], Any] = score) -> Any:
            item = reduce_groups(score(), offsets=offsets, reduction="max", empty_value=1.0)
            return rank(item)

        seconds, _ = _best_of(run, args.repeats)
        rows.append((f"policy {name} + max + rank, {args.n_items:,} items", seconds, float("nan")))
    region = margin(probs)

    def topk() -> Any:
        item = reduce_groups(region, offsets=offsets, reduction="topk_mean", empty_value=1.0)
        return rank(item)

    seconds, _ = _best_of(topk, args.repeats)
    label = f"reduction topk_mean (k=3) + rank, {args.n_items:,} items"
    rows.append((label, seconds, float("nan")))
    return rows


def bench_head(np: Any, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    from engine.sampling import k_center_greedy
    from engine.sampling.head import head_order
    from engine.sampling.policy import RankPolicy

    rng = np.random.default_rng(args.seed + 2)
    n = args.head_size
    points = rng.normal(size=(n, 256)).astype(np.float32)
    vectors = list(points)
    scores = np.sort(rng.uniform(size=n))[::-1]
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    whole_s, _ = _best_of(lambda: k_center_greedy(unit, n, metric="cosine", start=0), 1)
    rows = []
    for diversity in ("kcenter", "hybrid"):
        policy = RankPolicy(diversity=diversity, head=n, picks=args.head_picks)
        seconds, order = _best_of(lambda p=policy: head_order(scores, vectors, p), args.repeats)
        if sorted(order.tolist()) != list(range(n)):
            raise RuntimeError("head_order is not a permutation")
        rows.append(
            (
                f"head {diversity}: {args.head_picks} picks of {n:,} x 256",
                seconds,
                whole_s,
            )
        )
    return rows


def main() -> None:
    args = _parse()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np  # after the thread limits so BLAS honours them

    rows = (
        bench_rank(np, args)
        + bench_k_center(np, args)
        + bench_policies(np, args)
        + bench_head(np, args)
    )
    print(f"\nnumpy {np.__version__}, {args.threads} BLAS thread(s), best of {args.repeats}\n")
    print("| step | ours (s) | obvious alternative (s) | speed-up |")
    print("|---|---:|---:|---:|")
    for name, ours_s, alt_s in rows:
        alt = "" if alt_s != alt_s else f"{alt_s:.3f}"
        ratio = "" if alt_s != alt_s else f"{alt_s / ours_s:.0f}x"
        print(f"| {name} | {ours_s:.3f} | {alt} | {ratio} |")
    print(
        "\nAlternatives: ranking = per-item Python loop over region rows + sorted(key=...) on "
        f"{args.subset:,} items, scaled linearly; k-center = recompute distances to all picked "
        "centers every step; head = k-center ordering the whole head (every item picked)."
    )


if __name__ == "__main__":
    main()
