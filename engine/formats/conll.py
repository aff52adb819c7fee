"""CoNLL IOB2 for text items: the exported spans, tagged by ``engine.formats.spans``.

``annotations.conll`` holds one ``word<TAB>tag`` line per word, a blank line
between sentences and a ``-DOCSTART-`` line per item (``spans.to_conll``,
imported when used). Overlapping spans keep the earlier-starting, then longer,
one; image items and non-span labels are reported as skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from engine.formats.records import WriteResult
from engine.store import ItemLabels
from engine.types import Span

FILE_NAME = "annotations.conll"


def write_conll(items: Iterable[ItemLabels], out_dir: Path) -> WriteResult:
    from engine.formats.spans import LabeledSpan, TextAnnotation, to_conll

    result = WriteResult()
    annotations = []
    for entry in items:
        item = entry.item
        if item.kind != "text" or item.text is None:
            result.skipped.append(f"{item.item_id}: not a text item")
            continue
        spans = []
        for label in entry.labels:
            if isinstance(label.region, Span) and label.region.end <= len(item.text):
                spans.append(LabeledSpan(label.region.start, label.region.end, label.label))
            else:
                result.skipped.append(f"{item.item_id}: {label.label!r} is not a span in the text")
        kept: list[LabeledSpan] = []
        for span in sorted(set(spans), key=lambda s: (s.start, -s.end, s.label)):
            if not kept or span.start >= kept[-1].end:
                kept.append(span)
        annotations.append(TextAnnotation(item.item_id, item.text, tuple(kept)))
        result.n_labels += len(kept)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILE_NAME
    path.write_text(to_conll(annotations), encoding="utf-8")
    result.files.append(path)
    result.n_items = len(annotations)
    return result
