"""What every export writer shares: the result it reports and the image size it needs.

The labels themselves come from ``Store.labeled_items`` (``engine.store.labels``:
the labels after review, the same for every format and every trainer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.imaging.decode import image_size_px
from engine.store import ItemLabels


@dataclass
class WriteResult:
    """What one writer did: files written, counts, and why anything was left out."""

    files: list[Path] = field(default_factory=list)
    n_items: int = 0
    n_labels: int = 0
    skipped: list[str] = field(default_factory=list)


def entry_size_px(entry: ItemLabels, result: WriteResult) -> tuple[int, int] | None:
    """``image_size_px`` for an export entry; a failure is recorded as a skip reason."""
    try:
        size = image_size_px(entry.item, (label.region for label in entry.labels))
    except ValueError as exc:  # ImageDecodeError: a corrupt or unreadable file
        result.skipped.append(f"{entry.item.item_id}: {exc}")
        return None
    if size is None:
        result.skipped.append(f"{entry.item.item_id}: image size unknown (no local file)")
    return size
