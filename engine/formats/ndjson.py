"""Labelbox-style NDJSON: one JSON object per line, one line per annotation.

Every line has ``uuid`` (stable: derived from item id and label position),
``dataRow: {"id": item_id}`` and ``name`` (the label), plus one of:

- ``bbox: {top, left, height, width}`` in pixels (boxes);
- ``mask: {"png": base64 PNG}`` (0 / 255, image-sized) with the ``bbox`` of
  the mask alongside;
- ``location: {start, end}`` for spans, ``end`` *inclusive* as Labelbox counts;
- ``answer: {"name": label}`` under ``name: "classification"`` for whole-item
  labels.

Labels no person reviewed also carry ``confidence`` (the model score); every
line says how its item's labels were decided (``decidedBy``: ``person``,
``consensus``, ``reviewer``, ``gold``, ``machine`` or ``model``, see
``ItemLabels.decided_by``).
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.formats.records import WriteResult
from engine.imaging.masks import decode_rle
from engine.store import ItemLabels, ReviewedLabel
from engine.types import Box, Mask, Span

FILE_NAME = "annotations.ndjson"
_NAMESPACE = uuid.UUID("5b0f6b1e-9d1c-4f55-9a43-1f4c8d7a2e10")
CLASSIFICATION_NAME = "classification"


def write_ndjson(items: Iterable[ItemLabels], out_dir: Path) -> WriteResult:
    result = WriteResult()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILE_NAME
    with path.open("w", encoding="utf-8") as handle:
        for entry in items:
            result.n_items += 1
            for position, label in enumerate(entry.labels):
                line = ndjson_line(entry.item.item_id, position, label)
                line["decidedBy"] = entry.decided_by
                handle.write(json.dumps(line) + "\n")
                result.n_labels += 1
    result.files.append(path)
    return result


def ndjson_line(item_id: str, position: int, label: ReviewedLabel) -> dict[str, Any]:
    """The NDJSON object for one label of an item."""
    line: dict[str, Any] = {
        "uuid": str(uuid.uuid5(_NAMESPACE, f"{item_id}/{position}")),
        "dataRow": {"id": item_id},
        "name": label.label,
    }
    region = label.region
    if isinstance(region, Box):
        line["bbox"] = _bbox(region)
    elif isinstance(region, Mask):
        line["mask"] = {"png": _mask_png(region)}
        line["bbox"] = _bbox(region.box)
    elif isinstance(region, Span):
        line["location"] = {"start": region.start, "end": region.end - 1}
    else:
        line["name"] = CLASSIFICATION_NAME
        line["answer"] = {"name": label.label}
    if not label.reviewed:
        line["confidence"] = label.score
    return line


def _bbox(box: Box) -> dict[str, float]:
    return {"top": box.y1, "left": box.x1, "height": box.y2 - box.y1, "width": box.x2 - box.x1}


def _mask_png(mask: Mask) -> str:
    from PIL import Image

    pixels = decode_rle(mask.mask_rle, mask.height_px, mask.width_px)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype("uint8") * 255).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
