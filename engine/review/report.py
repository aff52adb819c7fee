"""Human-readable summaries of the store (the CLI's ``top`` table)."""

from __future__ import annotations

from rich.table import Table

from engine.review.explain import explain_item
from engine.sampling.policy import RankPolicy
from engine.store import Store, SuggestionRecord
from engine.types import Mask


def top_table(
    store: Store, *, limit: int, min_score: float, policy: RankPolicy | None = None
) -> Table:
    """The queue's head: per item its score and the suggestions above ``min_score``;
    with ``policy``, why: the item's uncertainty and its most uncertain regions with
    their top classes (``engine.review.explain``)."""
    title = f"Top {limit} items to label (higher score = label first)"
    if policy is not None:
        title += f"\npolicy: {policy.describe()}"
    table = Table(title=title)
    columns = ["rank", "item", "score", "file", "suggestions (label score)"]
    if policy is not None:
        columns.append("why (uncertainty: most uncertain regions, top classes)")
    for column in columns:
        table.add_column(column)
    for rank, (item_id, score, uri) in enumerate(store.top_items(limit=limit), start=1):
        records = store.suggestions_for(item_id, min_score=min_score)
        entries = _entries(records)
        shown = ", ".join(entries[:6])
        more = f" (+{len(entries) - 6})" if len(entries) > 6 else ""
        name = (uri or "").rsplit("/", 1)[-1]
        row = [str(rank), item_id[:12], f"{score:.3f}", name, (shown or "-") + more]
        if policy is not None:
            row.append(_why(store, item_id, policy))
        table.add_row(*row)
    return table


def _why(store: Store, item_id: str, policy: RankPolicy) -> str:
    why = explain_item(store, item_id, policy, with_rank=False)
    if why.uncertainty is None:
        return "no stored prediction"
    scored = [r for r in why.regions if r.uncertainty is not None]
    scored.sort(key=lambda r: -(r.uncertainty or 0.0))
    parts = [f"u={why.uncertainty:.3f}"]
    if not why.regions:
        parts.append("nothing found (blind spot)")
    for region in scored[:2]:
        classes = " ".join(f"{c} {p:.2f}" for c, p in region.top_classes[:3])
        parts.append(f"{region.label} u={region.uncertainty:.2f} [{classes}]")
    if why.signals:
        parts.append("signals: " + ",".join(why.signals))
    return "; ".join(parts)


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
