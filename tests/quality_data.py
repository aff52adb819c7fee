"""Items with one boxed suggestion each, for the consensus and gold tests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from engine.review import queue
from engine.review.decisions import record_decision
from engine.store import Store
from engine.types import Box, Feedback, Item, Prediction, Suggestion

BOX = Box(10, 10, 50, 50)


def boxed_items(
    store: Store,
    scores: list[float],
    *,
    label: str = "cat",
    labels: list[str] | None = None,
    embeddings: np.ndarray | None = None,
) -> list[str]:
    """Items ``q-000...`` (images), each with one prediction of one box: ``label`` (or
    ``labels[i]``), with ``embeddings[i]`` when given."""
    names = labels or [label] * len(scores)
    items = [Item(f"q-{i:03d}", "image", uri=f"/x/q{i}.jpg") for i in range(len(scores))]
    store.add_items(items, [None] * len(items))
    predictions = [
        Prediction(
            item.item_id,
            "m",
            "v1",
            (Suggestion(names[i], 0.6, BOX, "m", "v1"),),
            np.full((1, 1), 0.6, np.float32),
            class_names=(names[i],),
            embedding=None if embeddings is None else embeddings[i],
        )
        for i, item in enumerate(items)
    ]
    store.save_predictions(predictions, scores)
    return [item.item_id for item in items]


def decide(store: Store, item_id: str, person: str, action: str = "accept") -> None:
    fb = Feedback(item_id, action, f"{person}:{item_id}:{action}", annotator=person)
    record_decision(store, fb, respect_leases=True)


def label_until_empty(url: str, people: list[str]) -> list[tuple[str, str]]:
    """Each person (a thread each) leases and accepts until nothing is left for them."""
    store = Store(url)

    def run(person: str) -> list[tuple[str, str]]:
        got = []
        while (lease := queue.next_item(store, person, lease_seconds=300)) is not None:
            got.append((lease.item_id, person))
            decide(store, lease.item_id, person)
        return got

    try:
        with ThreadPoolExecutor(max_workers=len(people)) as pool:
            return [claim for claims in pool.map(run, people) for claim in claims]
    finally:
        store.close()
