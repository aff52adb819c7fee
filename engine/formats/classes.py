"""Whole-item classes (what an image classifier trains from): ``classes.csv`` and ``classes.json``.

One row per (item, class): ``item_id``, ``uri`` (the image's, "" for a text
item), ``label`` and ``decided_by`` (``person``, ``consensus``, ``reviewer``,
``gold``, ``machine`` or ``model``, see ``ItemLabels.decided_by``). The classes
are an item's labels without a region (``engine.store.labels``: an accepted or
edited suggestion of a classifier, a class a person gave the whole item); a
label with a region (box, mask, span) is reported as skipped, and so is an item
with no class at all. ``classes.json`` is the same rows as a JSON list, in the
same order (item id, then label).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

from engine.formats.records import WriteResult
from engine.store import ItemLabels

CSV_NAME = "classes.csv"
JSON_NAME = "classes.json"
COLUMNS = ("item_id", "uri", "label", "decided_by")


def item_classes(entry: ItemLabels, result: WriteResult) -> list[str]:
    """The item's whole-item labels, each once, in label order; regions are reported."""
    classes: set[str] = set()
    for label in entry.labels:
        if label.region is None:
            classes.add(label.label)
        else:
            result.skipped.append(
                f"{entry.item.item_id}: {label.label!r} has a {label.region.kind} region, "
                "not a whole-item class"
            )
    if not classes:
        result.skipped.append(f"{entry.item.item_id}: no whole-item class")
    return sorted(classes)


def write_classes(items: Iterable[ItemLabels], out_dir: Path) -> WriteResult:
    result = WriteResult()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    for entry in items:
        classes = item_classes(entry, result)
        if not classes:
            continue
        result.n_items += 1
        for label in classes:
            rows.append(
                {
                    "item_id": entry.item.item_id,
                    "uri": entry.item.uri or "",
                    "label": label,
                    "decided_by": entry.decided_by,
                }
            )
    result.n_labels = len(rows)
    csv_path, json_path = out_dir / CSV_NAME, out_dir / JSON_NAME
    with csv_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    result.files.extend([csv_path, json_path])
    return result
