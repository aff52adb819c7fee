"""Benchmark: ``queue.next_item`` with consensus and gold items vs the plain queue.

Run: ``.venv/bin/python benchmarks/queue_consensus.py`` (about a minute). Prints a
markdown table for docs/benchmarks.md.

Same SQLite backlog twice (``--items`` scored images in a temporary folder):
*plain* (no quality items: one claim statement per ``next``) and *consensus*
(``--overlap`` of the backlog under consensus for k = 3, plus ``--gold`` gold
items served at ``gold_rate`` 0.05). ``--clients`` threads, each one person,
loop for ``--seconds``: ``next`` -> item-level ``accept`` through
``record_decision`` (the consensus path resolves an item at its third person).
``next`` and the decision are timed separately (wall clock, as a caller sees
them). The ratio is consensus / plain: what k-person overlap, private decisions
and gold mixing cost per lease.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from engine.quality import consensus
from engine.review import queue
from engine.review.decisions import record_decision
from engine.store import Store
from engine.types import Box, Feedback, Item, Prediction, Suggestion


def build(url: str, n_items: int) -> list[str]:
    store = Store(url)
    items = [Item(f"i{i:07d}", "image", uri=f"/x/{i}.jpg") for i in range(n_items)]
    store.add_items(items, [None] * n_items)
    scores = np.random.default_rng(0).random(n_items)
    box = Box(1, 1, 9, 9)
    preds = [
        Prediction(
            it.item_id,
            "m",
            "v1",
            (Suggestion("cat", 0.5, box, "m", "v1"),),
            np.full((1, 1), 0.5, np.float32),
            class_names=("cat",),
        )
        for it in items
    ]
    for lo in range(0, n_items, 5000):
        store.save_predictions(preds[lo : lo + 5000], list(scores[lo : lo + 5000]))
    store.close()
    return [it.item_id for it in items]


def run(url: str, clients: int, seconds: float, gold_rate: float) -> dict[str, float]:
    store = Store(url)
    next_ms: list[float] = []
    decide_ms: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def person(name: str) -> None:
        mine_next, mine_decide = [], []
        turn = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            lease = queue.next_item(store, name, lease_seconds=300, gold_rate=gold_rate)
            t1 = time.perf_counter()
            if lease is None:
                break
            fb = Feedback(lease.item_id, "accept", f"{name}:{turn}", annotator=name)
            record_decision(store, fb, respect_leases=True)
            t2 = time.perf_counter()
            mine_next.append((t1 - t0) * 1000)
            mine_decide.append((t2 - t1) * 1000)
            turn += 1
        with lock:
            next_ms.extend(mine_next)
            decide_ms.extend(mine_decide)

    threads = [threading.Thread(target=person, args=(f"p{i}",)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.close()
    return {
        "leases_per_s": len(next_ms) / seconds,
        "next_p50": float(np.percentile(next_ms, 50)),
        "next_p99": float(np.percentile(next_ms, 99)),
        "decide_p50": float(np.percentile(decide_ms, 50)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--overlap", type=float, default=0.1)
    parser.add_argument("--gold", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="queue-consensus-"))
    try:
        rows = {}
        for variant in ("plain", "consensus"):
            url = f"sqlite:///{folder / variant}.db"
            ids = build(url, args.items)
            if variant == "consensus":
                store = Store(url)
                consensus.choose_overlap(store, k=3, fraction=args.overlap, seed=1)
                store.mark_gold(
                    [
                        {"item_id": i, "final_labels": [], "resolved_by": "bench"}
                        for i in ids[-args.gold :]
                    ]
                )
                store.close()
            gold_rate = 0.05 if variant == "consensus" else 0.0
            rows[variant] = run(url, args.clients, args.seconds, gold_rate)
        load = os.getloadavg()
        print(
            f"queue next with consensus: {args.items} items, {args.overlap:.0%} overlap (k=3), "
            f"{args.gold} gold at rate 0.05, {args.clients} clients x {args.seconds:.0f} s, "
            f"{os.cpu_count()} CPUs, load average after {load[0]:.2f}\n"
        )
        print("| variant | leases/s | next p50 ms | next p99 ms | decision p50 ms |")
        print("|---|---:|---:|---:|---:|")
        for name, r in rows.items():
            print(
                f"| {name} | {r['leases_per_s']:.0f} | {r['next_p50']:.2f} | "
                f"{r['next_p99']:.2f} | {r['decide_p50']:.2f} |"
            )
        ratio = rows["consensus"]["next_p50"] / rows["plain"]["next_p50"]
        speed = rows["plain"]["leases_per_s"] / rows["consensus"]["leases_per_s"]
        print(
            f"\nnext p50: consensus / plain = {ratio:.2f}x; "
            f"throughput plain / consensus = {speed:.2f}x"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
