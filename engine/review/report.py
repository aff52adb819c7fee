"""Human-readable summaries of the store (the CLI's ``top`` table)."""

from __future__ import annotations

from rich.table import Table

from engine.store import Store, SuggestionRecord
from engine.types import Mask


def top_table(store: Store, *, limit: int, min_score: float) -> Table:
    """The queue's head: per item its score and the suggestions above ``min_score``."""
    table = Table(title=f"Top {limit} items to label (higher score = label first)")
    for column in ("rank", "item", "score", "file", "suggestions (label score)"):
        table.add_column(column)
    for rank, (item_id, score, uri) in enumerate(store.top_items(limit=limit), start=1):
        records = store.suggestions_for(item_id, min_score=min_score)
        entries = _entries(records)
        shown = ", ".join(entries[:6])
        more = f" (+{len(entries) - 6})" if len(entries) > 6 else ""
        name = (uri or "").rsplit("/", 1)[-1]
        table.add_row(str(rank), item_id[:12], f"{score:.3f}", name, (shown or "-") + more)
    return table


def _entries(records: list[SuggestionRecord]) -> list[str]:
    """``label score`` per suggestion; a mask chained to a box is shown on its box
    (``person 0.91+mask``), not as a second entry."""
    masked = {
        (r.prediction_id, r.suggestion.parent_index)
        for r in records
        if isinstance(r.suggestion.region, Mask) and r.suggestion.parent_index is not None
    }
    entries = []
    for r in records:
        if isinstance(r.suggestion.region, Mask) and r.suggestion.parent_index is not None:
            continue
        mask = "+mask" if (r.prediction_id, r.position) in masked else ""
        entries.append(f"{r.suggestion.label} {r.suggestion.score:.2f}{mask}")
    return entries
