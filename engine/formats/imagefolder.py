"""An image-folder dataset (torchvision ``ImageFolder``, timm, Keras): ``<class>/<file>``.

Each image with a whole-item class (``engine.formats.classes.item_classes``) is
copied to ``out_dir/<class>/<its file name>``; an image with several classes is
copied into each. File names are made unique within a class folder (``a.jpg``,
``a_2.jpg``...), and class folder names are made safe (no path separators, not
``.`` / ``..``; two classes never share a folder). Text items, images that are
not local files and labels with a region are reported as skipped.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from engine.formats.classes import item_classes
from engine.formats.records import WriteResult
from engine.imaging.decode import local_path
from engine.store import ItemLabels

_UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|]+')


def write_imagefolder(items: Iterable[ItemLabels], out_dir: Path) -> WriteResult:
    result = WriteResult()
    out_dir.mkdir(parents=True, exist_ok=True)
    folders: dict[str, str] = {}  # class -> folder name
    taken: dict[str, set[str]] = {}  # folder name -> file names in it
    for entry in items:
        item = entry.item
        source = local_path(item.uri) if item.kind == "image" and item.uri else None
        if source is None or not source.is_file():
            result.skipped.append(f"{item.item_id}: not a local image file")
            continue
        classes = item_classes(entry, result)
        for label in classes:
            folder = _folder(label, folders, taken)
            name = _unique_name(source, taken[folder])
            target = out_dir / folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            result.n_labels += 1
        result.n_items += bool(classes)
    result.files.extend(out_dir / folder for folder in sorted(taken))
    return result


def _folder(label: str, folders: dict[str, str], taken: dict[str, set[str]]) -> str:
    if label in folders:
        return folders[label]
    base = _UNSAFE.sub("_", label).strip().strip(".") or "class"
    folder, n = base, 1
    while folder in taken:
        n += 1
        folder = f"{base}_{n}"
    folders[label] = folder
    taken[folder] = set()
    return folder


def _unique_name(source: Path, taken: set[str]) -> str:
    stem, suffix = source.stem or "image", source.suffix.lower()
    name, n = f"{stem}{suffix}", 1
    while name.casefold() in taken:
        n += 1
        name = f"{stem}_{n}{suffix}"
    taken.add(name.casefold())
    return name
