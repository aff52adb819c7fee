"""Import gold labels: COCO JSON, Label Studio tasks JSON, CoNLL.

Each reader maps a file's entries to stored items and their labels, then every
item found becomes gold (``engine.quality.consensus.mark_gold``). Items are
found by id first (``item_id`` of a COCO image or in a Label Studio task's
``data``, as the engine's exports write them), else by uri (COCO ``file_name``,
the task's image), else by text (Label Studio text tasks, CoNLL sentences: the
words joined by spaces, or the item text's own words). An entry that names no
stored item, or an item that is already gold or under consensus, is skipped
with its place in the file (``file: images[3]``, ``file: line 12``); a file
that cannot be read at all is a ``ValueError`` naming it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.labelstudio.annotations import results_to_regions
from engine.models.ner.decode import decode_tags
from engine.quality.consensus import QualityStateError, mark_gold
from engine.store import Store
from engine.training.conll import parse_conll
from engine.types import Box, Item, Mask, Region, Span

FORMATS = ("coco", "labelstudio", "conll")


@dataclass
class GoldImport:
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Index:
    by_id: dict[str, Item]
    by_uri: dict[str, Item]
    by_text: dict[str, Item]

    @classmethod
    def of(cls, items: Iterable[Item]) -> _Index:
        by_id, by_uri, by_text = {}, {}, {}
        for item in items:
            by_id[item.item_id] = item
            if item.uri:
                by_uri[item.uri] = item
                by_uri.setdefault(Path(item.uri).name, item)
            if item.text is not None:
                by_text[" ".join(item.text.split())] = item
        return cls(by_id, by_uri, by_text)

    def find(self, item_id: Any = None, uri: Any = None, text: Any = None) -> Item | None:
        if isinstance(item_id, str) and item_id in self.by_id:
            return self.by_id[item_id]
        if isinstance(uri, str):
            found = self.by_uri.get(uri) or self.by_uri.get(Path(uri).name)
            if found is not None:
                return found
        if isinstance(text, str):
            return self.by_text.get(" ".join(text.split()))
        return None


def _label(label: str, region: Region | None) -> dict[str, Any]:
    return {"label": label, "region": None if region is None else region.to_dict()}


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from exc


def read_coco(path: Path, index: _Index, out: GoldImport) -> dict[str, list[dict[str, Any]]]:
    data = _load_json(path)
    if not isinstance(data, Mapping) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise ValueError(f"{path}: a COCO file needs lists 'images', 'annotations', 'categories'")
    names = {c.get("id"): str(c.get("name")) for c in data["categories"] if isinstance(c, Mapping)}
    items: dict[Any, Item] = {}
    labels: dict[str, list[dict[str, Any]]] = {}
    for i, image in enumerate(data["images"]):
        item = (
            index.find(image.get("item_id"), image.get("file_name"))
            if isinstance(image, Mapping)
            else None
        )
        if item is None:
            out.skipped.append(
                f"{path}: images[{i}]: no stored item with this item_id or file_name"
            )
            continue
        items[image.get("id")] = item
        labels[item.item_id] = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        item = items.get(ann.get("image_id")) if isinstance(ann, Mapping) else None
        if item is None:
            out.skipped.append(f"{where}: image_id not among the imported images")
            continue
        name = names.get(ann.get("category_id"))
        try:
            if name is None:
                raise ValueError(f"category_id {ann.get('category_id')!r} is not in categories")
            labels[item.item_id].append(_label(name, _coco_region(ann)))
        except (TypeError, ValueError, KeyError) as exc:
            out.skipped.append(f"{where}: {exc}")
    return labels


def _coco_region(ann: Mapping[str, Any]) -> Region:
    x, y, w, h = (float(v) for v in ann["bbox"])
    box = Box(x, y, x + w, y + h)
    seg = ann.get("segmentation")
    if isinstance(seg, Mapping) and isinstance(seg.get("counts"), str):
        height_px, width_px = (int(v) for v in seg["size"])
        return Mask(seg["counts"], height_px, width_px, box)
    return box


def read_labelstudio(path: Path, index: _Index, out: GoldImport) -> dict[str, list[dict[str, Any]]]:
    data = _load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: a Label Studio export is a JSON list of tasks")
    labels: dict[str, list[dict[str, Any]]] = {}
    for i, task in enumerate(data):
        where = f"{path}: tasks[{i}]"
        task_data = task.get("data") if isinstance(task, Mapping) else None
        if not isinstance(task_data, Mapping):
            out.skipped.append(f"{where}: no data object")
            continue
        uri = next((v for k, v in task_data.items() if k != "item_id" and isinstance(v, str)), None)
        item = index.find(task_data.get("item_id"), uri, uri)
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if item is None or not annotations:
            out.skipped.append(
                f"{where}: " + ("no stored item" if item is None else "no annotation")
            )
            continue
        try:
            regions = results_to_regions(annotations[-1].get("result") or [], text=item.text)
        except ValueError as exc:
            out.skipped.append(f"{where}: {exc}")
            continue
        labels[item.item_id] = [_label(r.label, r.region) for r in regions]
    return labels


def read_conll_file(path: Path, index: _Index, out: GoldImport) -> dict[str, list[dict[str, Any]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        sentences = parse_conll(lines)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    labels: dict[str, list[dict[str, Any]]] = {}
    for n, sentence in enumerate(sentences, start=1):
        item = index.find(text=" ".join(sentence.words))
        if item is None or item.text is None:
            out.skipped.append(f"{path}: sentence {n}: no stored text item with these words")
            continue
        starts, cursor = [], 0
        for word in sentence.words:
            cursor = item.text.index(word, cursor)
            starts.append(cursor)
            cursor += len(word)
        labels[item.item_id] = [
            _label(kind, Span(starts[a], starts[b - 1] + len(sentence.words[b - 1])))
            for a, b, kind in decode_tags(sentence.tags)
        ]
    return labels


_READERS = {"coco": read_coco, "labelstudio": read_labelstudio, "conll": read_conll_file}


def import_gold(store: Store, path: str | Path, fmt: str, *, by: str) -> GoldImport:
    """Make every item the file labels gold with its labels (see the module docstring)."""
    if fmt not in _READERS:
        raise ValueError(f"unknown gold format {fmt!r}; expected one of {', '.join(FORMATS)}")
    source = Path(path)
    if not source.is_file():
        raise ValueError(f"{source}: no such file")
    out = GoldImport()
    labels = _READERS[fmt](source, _Index.of(store.iter_items()), out)
    per_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item_id, found in labels.items():
        per_item[item_id].extend(found)
    for item_id, found in sorted(per_item.items()):
        try:
            mark_gold(store, item_id, labels=found, by=by)
        except QualityStateError as exc:
            out.skipped.append(f"{source}: {exc}")
            continue
        out.imported.append(item_id)
    return out
