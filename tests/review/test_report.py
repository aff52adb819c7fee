"""The CLI's ``top`` table: ranked items, chained masks shown on their boxes."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from engine.imaging.masks import mask_to_region
from engine.review.report import top_table
from engine.store import Store
from engine.types import Box, Item, Prediction, Suggestion


def _render(store: Store) -> str:
    console = Console(width=200, record=True)
    console.print(top_table(store, limit=5, min_score=0.25))
    return console.export_text()


def test_top_lists_items_by_score_and_masks_on_their_boxes(store: Store) -> None:
    store.add_items(
        [Item("a", "image", uri="/x/a.jpg"), Item("b", "image", uri="/x/b.jpg")], [None, None]
    )
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:8, 2:8] = True
    made = (
        Suggestion("person", 0.9, Box(1, 1, 9, 9), "det", "d1"),
        Suggestion("dog", 0.5, Box(10, 10, 15, 15), "det", "d1"),
        Suggestion("person", 0.8, mask_to_region(mask), "seg", "s1", parent_index=0),
    )
    chained = Prediction("a", "det+seg", "det+seg-1", made, np.zeros((3, 0), np.float32))
    plain = Prediction("b", "det", "d1", made[:1], np.zeros((1, 0), np.float32))
    store.save_predictions([chained, plain], [0.2, 0.7])
    assert [row[0] for row in store.top_items(limit=5)] == ["b", "a"]
    text = _render(store)
    assert "person 0.90+mask, dog 0.50" in text
    assert text.count("person 0.80") == 0  # the mask is not a second entry
    assert text.index("b.jpg") < text.index("a.jpg")
