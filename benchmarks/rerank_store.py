"""Benchmark: re-rank a live SQLite queue from stored predictions (``labelengine rank``).

Run: ``.venv/bin/python benchmarks/rerank_store.py [--items 20000]``. Builds a
store of N image items, each with a stored detector prediction (3 boxes x 80
classes, a 256-wide embedding), then times ``rank_backlog`` under a new score
(every score changes) and under a diverse policy (k-center over a head of
2,000, 200 picks). The obvious alternative reads each item's prediction with
its own queries (``store.stored_prediction`` per item, then one ``set_scores``),
timed on a subset and scaled linearly. Prints a markdown table and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--subset", type=int, default=2_000, help="items for the alternative")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _fill(store: object, n: int, seed: int) -> None:
    import numpy as np

    from engine.review.scoring import queue_score
    from engine.types import Box, Item, Prediction, Suggestion

    rng = np.random.default_rng(seed)
    classes = tuple(f"c{i}" for i in range(80))
    for lo in range(0, n, 1000):
        ids = [f"item-{i:07d}" for i in range(lo, min(lo + 1000, n))]
        store.add_items([Item(i, "image", uri=f"/data/{i}.jpg") for i in ids], [None] * len(ids))  # type: ignore[attr-defined]
        predictions = []
        for item_id in ids:
            rows = rng.uniform(0, 0.6, size=(3, 80)).astype(np.float32)
            suggestions = tuple(
                Suggestion(classes[int(r.argmax())], float(r.max()), Box(1, 1, 9, 9), "det", "v1")
                for r in rows
            )
            embedding = rng.normal(size=256).astype(np.float32)
            predictions.append(
                Prediction(item_id, "det", "v1", suggestions, rows, classes, embedding=embedding)
            )
        store.save_predictions(predictions, [queue_score(p, "image") for p in predictions])  # type: ignore[attr-defined]


def main() -> None:
    args = _parse()
    from engine.review.ranking import rank_backlog
    from engine.review.scoring import queue_score
    from engine.sampling.policy import policy_from
    from engine.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        t0 = time.perf_counter()
        _fill(store, args.items, args.seed)
        fill_s = time.perf_counter() - t0
        margin = policy_from("margin")
        t0 = time.perf_counter()
        report = rank_backlog(store, margin)
        ours_s = time.perf_counter() - t0
        diverse = policy_from("margin,diversity=kcenter,head=2000,picks=200")
        t0 = time.perf_counter()
        diverse_report = rank_backlog(store, diverse)
        diverse_s = time.perf_counter() - t0
        entropy = policy_from("entropy")
        ids = [f"item-{i:07d}" for i in range(args.subset)]
        t0 = time.perf_counter()
        scores = []
        for item_id in ids:
            stored = store.stored_prediction(item_id)
            assert stored is not None
            scores.append(queue_score(stored.prediction, "image", entropy))
        store.set_scores(ids, scores, None)
        naive_s = (time.perf_counter() - t0) * args.items / args.subset
        store.close()
    print(f"\n{args.items:,} items (3 boxes x 80 classes, 256-d embeddings); fill {fill_s:.1f} s\n")
    print("| step | ours (s) | items/s | per-item queries (s, scaled) | speed-up |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| rank_backlog, new score ({report.n_changed:,} changed) | {ours_s:.2f} | "
        f"{args.items / ours_s:,.0f} | {naive_s:.2f} | {naive_s / ours_s:.1f}x |"
    )
    print(
        f"| rank_backlog + k-center head ({diverse_report.n_head:,} / 200 picks) | "
        f"{diverse_s:.2f} | {args.items / diverse_s:,.0f} | | |"
    )


if __name__ == "__main__":
    main()
