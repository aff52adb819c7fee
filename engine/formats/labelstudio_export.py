"""Label Studio tasks JSON: import-ready tasks with the exported labels as predictions.

One file pair per item kind present: ``tasks_image.json`` / ``tasks_text.json``
and, unless a labeling config is given, the matching generated
``config_image.xml`` / ``config_text.xml`` to create the project with. Each
task is ``{"data": {<data key>: uri or text, "item_id": ...}, "predictions":
[{"model_version", "score", "result"}], "meta": {"decided_by": ...}}`` (how the
labels were decided, ``ItemLabels.decided_by``); the prediction ``score`` is
``task_score`` of the item's queue score (higher = label first) and each region
keeps its own ``score``. Image data is the item's uri as stored: Label Studio
must be able to open it (local files need its local-storage setup).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from engine.formats.records import WriteResult, entry_size_px
from engine.labelstudio.config import LabelingConfig, parse_labeling_config
from engine.labelstudio.results import merge_choice_results, suggestion_to_results, task_score
from engine.store import ItemLabels, ReviewedLabel
from engine.types import Box, Mask, Span, Suggestion

EXPORT_MODEL_VERSION = "labelengine-export"


def write_labelstudio(
    items: Iterable[ItemLabels], out_dir: Path, *, labeling_config: str | None = None
) -> WriteResult:
    result = WriteResult()
    out_dir.mkdir(parents=True, exist_ok=True)
    given = parse_labeling_config(labeling_config) if labeling_config else None
    by_kind: dict[str, list[ItemLabels]] = {}
    for entry in items:
        by_kind.setdefault(entry.item.kind, []).append(entry)
    for kind, entries in sorted(by_kind.items()):
        config = given
        if config is None:
            xml = default_labeling_config(kind, [lb for e in entries for lb in e.labels])
            config_path = out_dir / f"config_{kind}.xml"
            config_path.write_text(xml, encoding="utf-8")
            result.files.append(config_path)
            config = parse_labeling_config(xml)
        if config.object_for(kind) is None:
            result.skipped.extend(f"{e.item.item_id}: config shows no {kind}" for e in entries)
            continue
        tasks = [_task(entry, config, result) for entry in entries]
        path = out_dir / f"tasks_{kind}.json"
        path.write_text(json.dumps(tasks), encoding="utf-8")
        result.files.append(path)
        result.n_items += len(tasks)
        result.n_labels += sum(len(t["predictions"][0]["result"]) for t in tasks)
    return result


def default_labeling_config(kind: str, labels: Sequence[ReviewedLabel]) -> str:
    """A config with one control per region type present, listing the labels it holds."""

    def values(*types: type) -> list[str]:
        wanted = [lb.label for lb in labels if isinstance(lb.region, types)]
        return sorted(set(wanted))

    whole_item = sorted({lb.label for lb in labels if lb.region is None})
    if kind == "image":
        parts = ['  <Image name="image" value="$image"/>']
        parts += _control("RectangleLabels", "label", "image", values(Box))
        parts += _control("BrushLabels", "brush", "image", values(Mask))
        parts += _control("Choices", "class", "image", whole_item)
    elif kind == "text":
        parts = ['  <Text name="text" value="$text"/>']
        parts += _control("Labels", "label", "text", values(Span))
        parts += _control("Choices", "class", "text", whole_item)
    else:
        raise ValueError(f"no Label Studio config for items of kind {kind!r}")
    if len(parts) == 1:  # nothing labeled yet: still a valid project to label in
        parts += _control("Choices", "class", parts[0].split('"')[1], ["unlabeled"])
    return "<View>\n" + "\n".join(parts) + "\n</View>\n"


def _control(tag: str, name: str, to_name: str, values: list[str]) -> list[str]:
    if not values:
        return []
    child = "Choice" if tag == "Choices" else "Label"
    extra = ' choice="multiple"' if tag == "Choices" else ""
    lines = [f'  <{tag} name="{name}" toName="{to_name}"{extra}>']
    lines += [f"    <{child} value={quoteattr(v)}/>" for v in values]
    return [*lines, f"  </{tag}>"]


def _task(entry: ItemLabels, config: LabelingConfig, result: WriteResult) -> dict[str, Any]:
    item = entry.item
    target = config.object_for(item.kind)
    data_key = target.data_key if target is not None else item.kind
    data = {data_key: item.uri if item.kind == "image" else item.text, "item_id": item.item_id}
    needs_size = any(isinstance(lb.region, Box) for lb in entry.labels)
    size = entry_size_px(entry, result) if needs_size else None
    results: list[dict[str, Any]] = []
    for index, label in enumerate(entry.labels):
        if isinstance(label.region, Box) and size is None:
            result.skipped.append(f"{item.item_id}: {label.label!r} box needs the image size")
            continue
        suggestion = Suggestion(
            label.label, label.score, label.region, "export", label.model_version or "export"
        )
        rid = f"s{label.suggestion_id}" if label.suggestion_id is not None else f"f{index}"
        results.extend(
            suggestion_to_results(
                suggestion, config, image_size_px=size, result_id=rid, text=item.text
            )
        )
    versions = sorted({lb.model_version for lb in entry.labels if lb.model_version})
    prediction = {
        "model_version": ",".join(versions) or EXPORT_MODEL_VERSION,
        "score": task_score(entry.item_score),
        "result": merge_choice_results(results),
    }
    return {"data": data, "predictions": [prediction], "meta": {"decided_by": entry.decided_by}}
