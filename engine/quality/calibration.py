"""Calibration batches: a small diverse sample every annotator labels first.

``draw_calibration`` picks ``size`` unlabeled items: k-center (farthest-first,
``engine.sampling.diversity``) on their stored prediction embeddings when every
candidate has one of the same width, otherwise stratified by predicted class
(round-robin over each item's most confident suggested label, shuffled with the
seed). The items become overlap items for ``k`` people (default: every active
annotator), under a batch id; while the batch is open the queue serves nothing
else. ``calibration_report`` lists the items and classes with the lowest
agreement (where the instructions are unclear); a reviewer then closes the batch
(``close_calibration``) and regular work starts. Several rounds are allowed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.quality.consensus import QualityStateError, majority
from engine.quality.report import ReportFilter, agreement_section, rated_items
from engine.store import Batch, Store


@dataclass(frozen=True)
class CalibrationBatch:
    batch: Batch
    item_ids: tuple[str, ...]
    k: int
    method: str  # k-center | stratified


def _annotators(store: Store) -> int:
    return sum(1 for u in store.list_users() if u.active and u.role == "annotator")


def _stratified(store: Store, pool: list[str], size: int, seed: int) -> list[str]:
    labels = store.top_labels(pool)
    groups: dict[str, list[str]] = defaultdict(list)
    for item_id in pool:
        groups[labels.get(item_id, "(no suggestion)")].append(item_id)
    rng = random.Random(seed)
    for members in groups.values():
        rng.shuffle(members)
    picks: list[str] = []
    order = sorted(groups)
    while len(picks) < size:
        for label in order:
            if groups[label] and len(picks) < size:
                picks.append(groups[label].pop())
    return sorted(picks)


def _k_center(vectors: dict[str, np.ndarray], pool: list[str], size: int) -> list[str] | None:
    from engine.sampling.diversity import k_center_greedy

    if len(vectors) != len(pool) or len({v.shape for v in vectors.values()}) != 1:
        return None
    matrix = np.stack([vectors[i] for i in pool])
    return sorted(pool[int(j)] for j in k_center_greedy(matrix, size))


def draw_calibration(
    store: Store, *, size: int, k: int | None = None, seed: int = 0
) -> CalibrationBatch:
    """Open a calibration batch of ``size`` diverse unlabeled items for ``k`` people."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    people = k if k is not None else _annotators(store)
    if people < 2:
        raise ValueError(
            f"a calibration batch needs >= 2 people; found {people} active annotator(s) "
            "(add people with `labelengine users add`, or give k)"
        )
    pool = store.single_unlabeled_ids()
    if not pool:
        raise ValueError("no unlabeled items to calibrate on")
    size = min(size, len(pool))
    picks = _k_center(store.latest_embeddings(pool), pool, size)
    method = "k-center"
    if picks is None:
        picks, method = _stratified(store, pool, size, seed), "stratified"
    batch_id = f"calibration-{store.count_batches() + 1}"
    rows = [{"item_id": i, "role": "overlap", "k": people, "state": "open"} for i in picks]
    batch = store.create_batch(batch_id, "calibration", rows)
    return CalibrationBatch(batch, tuple(picks), people, method)


def close_calibration(store: Store, batch_id: str, *, by: str) -> Batch:
    batch = store.batch(batch_id)
    if batch.state != "open":
        raise QualityStateError(f"batch {batch_id!r} is already closed")
    return store.close_batch(batch_id, by)


def calibration_report(store: Store, batch_id: str, *, lowest: int = 10) -> dict[str, Any]:
    """Agreement on the batch: overall, the ``lowest`` items and the classes, worst first."""
    batch = store.batch(batch_id)
    rated = rated_items(store, "overlap", batch=batch_id)
    items = []
    for r in rated:
        if len(r.given) >= 2:
            share = len(majority(r.given)) / len(r.given)
            items.append({"item_id": r.quality.item_id, "raters": len(r.given), "agreement": share})
    section = agreement_section(rated, ReportFilter())
    classes = sorted(
        (c for c in section["per_class"] if c["fleiss_kappa"] is not None),
        key=lambda c: c["fleiss_kappa"],
    )
    return {
        "batch_id": batch.batch_id,
        "state": batch.state,
        "items": len(rated),
        "finished_by_all": sum(1 for r in rated if len(r.given) == r.quality.k),
        "fleiss_kappa": section["fleiss_kappa"],
        "verdict": section["verdict"],
        "lowest_items": sorted(items, key=lambda i: (i["agreement"], i["item_id"]))[:lowest],
        "lowest_classes": classes,
    }
