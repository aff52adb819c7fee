"""COCO detection / instance-segmentation JSON (what ``pycocotools.coco.COCO`` loads).

``annotations.json``: ``images`` (``id``, ``file_name`` = the item's uri,
``width``, ``height`` from the image header, ``item_id``), ``categories`` (one
per exported label, sorted, ids from 1), ``annotations`` with ``bbox`` as
``[x, y, w, h]`` pixels, ``area``, ``iscrowd`` 0, ``segmentation`` as compressed
RLE for masks and ``[]`` for boxes, and ``score`` / ``source`` (how the label was
decided: ``accepted``, ``edited``, ``consensus``, ``reviewer``, ``gold``...). Text items,
spans and whole-item labels have no COCO form and are reported as skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.formats.records import WriteResult, entry_size_px
from engine.store import ItemLabels, ReviewedLabel
from engine.types import Box, Mask

FILE_NAME = "annotations.json"


def write_coco(items: Iterable[ItemLabels], out_dir: Path) -> WriteResult:
    result = WriteResult()
    images: list[dict[str, Any]] = []
    pending: list[tuple[int, ReviewedLabel]] = []
    for entry in items:
        if entry.item.kind != "image":
            result.skipped.append(f"{entry.item.item_id}: text items have no COCO form")
            continue
        size = entry_size_px(entry, result)
        if size is None:
            continue
        image_id = len(images) + 1
        images.append(
            {
                "id": image_id,
                "file_name": entry.item.uri,
                "width": size[0],
                "height": size[1],
                "item_id": entry.item.item_id,
            }
        )
        for label in entry.labels:
            problem = _problem(label, size)
            if problem is None:
                pending.append((image_id, label))
            else:
                result.skipped.append(f"{entry.item.item_id}: {label.label!r} {problem}")
    categories = {name: i + 1 for i, name in enumerate(sorted({lb.label for _, lb in pending}))}
    annotations = [
        _annotation(i + 1, image_id, categories[label.label], label)
        for i, (image_id, label) in enumerate(pending)
    ]
    document = {
        "info": {"description": "labelengine export"},
        "images": images,
        "categories": [{"id": cid, "name": name} for name, cid in categories.items()],
        "annotations": annotations,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILE_NAME
    path.write_text(json.dumps(document), encoding="utf-8")
    result.files.append(path)
    result.n_items, result.n_labels = len(images), len(annotations)
    return result


def _problem(label: ReviewedLabel, size: tuple[int, int]) -> str | None:
    region = label.region
    if isinstance(region, Mask) and (region.width_px, region.height_px) != size:
        return f"mask is {region.width_px}x{region.height_px}, image is {size[0]}x{size[1]}"
    if not isinstance(region, Box | Mask):
        return "has no box or mask"
    return None


def _annotation(
    ann_id: int, image_id: int, category_id: int, label: ReviewedLabel
) -> dict[str, Any]:
    region = label.region
    box = region.box if isinstance(region, Mask) else region
    if not isinstance(box, Box):
        raise ValueError(f"label {label.label!r} has no box")
    annotation: dict[str, Any] = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1],
        "area": box.area_px,
        "iscrowd": 0,
        "segmentation": [],
        "score": label.score,
        "source": label.source,
    }
    if isinstance(region, Mask):
        from pycocotools import mask as mask_utils

        rle = {"size": [region.height_px, region.width_px], "counts": region.mask_rle}
        annotation["segmentation"] = rle
        annotation["area"] = float(mask_utils.area({**rle, "counts": region.mask_rle.encode()}))
    return annotation
