"""YOLO detection dataset (what ultralytics trains from).

Layout under ``out_dir``::

    images/<stem><suffix>   link (or copy) to each exported image
    labels/<stem>.txt       one "class cx cy w h" line per box, normalised to [0, 1]
    data.yaml               path, train/val = images, names = {index: label}

Ultralytics finds a label file by swapping ``/images/`` for ``/labels/`` in the
image path, hence the links. A mask is written as its box; spans, whole-item
labels and zero-area boxes (key points) are reported as skipped. A reviewed
image with no boxes gets an empty label file (a background image).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from engine.formats.records import WriteResult, entry_size_px
from engine.imaging.decode import local_path
from engine.store import ItemLabels
from engine.types import Box, Mask

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def write_yolo(items: Iterable[ItemLabels], out_dir: Path) -> WriteResult:
    result = WriteResult()
    images_dir, labels_dir = out_dir / "images", out_dir / "labels"
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[Path, list[tuple[str, tuple[float, float, float, float]]]]] = []
    stems: set[str] = set()
    for entry in items:
        source = local_path(entry.item.uri) if entry.item.kind == "image" else None
        if source is None or not source.is_file():
            result.skipped.append(f"{entry.item.item_id}: not a local image file")
            continue
        size = entry_size_px(entry, result)
        if size is None:
            continue
        stem = _unique_stem(entry.item.item_id, stems)
        _link(source, images_dir / f"{stem}{source.suffix.lower()}")
        rows.append((labels_dir / f"{stem}.txt", _boxes(entry, size, result)))
    names = sorted({label for _, boxes in rows for label, _ in boxes})
    index = {name: i for i, name in enumerate(names)}
    for path, boxes in rows:
        lines = [f"{index[label]} " + " ".join(f"{v:.6f}" for v in xywh) for label, xywh in boxes]
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        result.n_labels += len(lines)
    data_yaml = out_dir / "data.yaml"
    _write_data_yaml(data_yaml, out_dir, names)
    result.files.extend([data_yaml, images_dir, labels_dir])
    result.n_items = len(rows)
    return result


def _boxes(
    entry: ItemLabels, size: tuple[int, int], result: WriteResult
) -> list[tuple[str, tuple[float, float, float, float]]]:
    width_px, height_px = size
    boxes = []
    for label in entry.labels:
        region = label.region
        box = region.box if isinstance(region, Mask) else region
        if not isinstance(box, Box) or box.area_px <= 0:
            result.skipped.append(f"{entry.item.item_id}: {label.label!r} has no box with area")
            continue
        x1, x2 = min(box.x1, width_px), min(box.x2, width_px)
        y1, y2 = min(box.y1, height_px), min(box.y2, height_px)
        xywh = (
            (x1 + x2) / 2 / width_px,
            (y1 + y2) / 2 / height_px,
            (x2 - x1) / width_px,
            (y2 - y1) / height_px,
        )
        boxes.append((label.label, xywh))
    return boxes


def _unique_stem(item_id: str, taken: set[str]) -> str:
    base = _UNSAFE.sub("_", item_id).strip("._") or "item"
    stem, n = base, 1
    while stem in taken:
        n += 1
        stem = f"{base}_{n}"
    taken.add(stem)
    return stem


def _link(source: Path, target: Path) -> None:
    if target.is_symlink() or target.exists():
        target.unlink()
    try:
        os.symlink(source.resolve(), target)
    except OSError:
        shutil.copy2(source, target)


def _write_data_yaml(path: Path, root: Path, names: list[str]) -> None:
    import yaml

    document = {
        "path": str(root.resolve()),
        "train": "images",
        "val": "images",
        "names": dict(enumerate(names)),
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
