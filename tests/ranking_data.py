"""Stored predictions whose order depends on the ranking policy (tests' helpers)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.store import Store
from engine.types import Box, Item, Prediction, Suggestion

VERSION = "det-v1"


def box_prediction(
    item_id: str,
    rows: Sequence[Sequence[float]],
    *,
    embedding: Sequence[float] | None = None,
    signals: dict[str, np.ndarray] | None = None,
) -> Prediction:
    """One box per class row (confidence = the row's max), classes ``cat`` / ``dog``."""
    suggestions = tuple(
        Suggestion(
            ("cat", "dog")[int(np.argmax(row))],
            float(max(row)),
            Box(1 + i, 1, 9 + i, 9),
            "det",
            VERSION,
        )
        for i, row in enumerate(rows)
    )
    return Prediction(
        item_id,
        "det",
        VERSION,
        suggestions,
        np.array(rows, dtype=np.float32).reshape(len(rows), 2),
        ("cat", "dog"),
        embedding=None if embedding is None else np.asarray(embedding, dtype=np.float32),
        signals=signals or {},
    )


def store_predictions(store: Store, predictions: Sequence[Prediction]) -> None:
    """Items and their predictions, scored as a default-policy pre-label job would."""
    from engine.review.scoring import queue_score

    items = [Item(p.item_id, "image", uri=f"/data/{p.item_id}.png") for p in predictions]
    store.add_items(items, [None] * len(items))
    store.save_predictions(predictions, [queue_score(p, "image") for p in predictions])


def served_order(store: Store, n: int) -> list[str]:
    """The first ``n`` item ids the queue serves, in order."""
    return [item_id for item_id, _, _ in store.top_items(limit=n)]
