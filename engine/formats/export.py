"""Export accepted labels from the store to a training or labeling format.

``export(store, fmt, out_dir)`` gathers each item's labels after review (see
``engine.store.labels`` for exactly which) and hands them to the writer of
``fmt``:

- ``coco``: ``annotations.json`` (pycocotools), masks as compressed RLE;
- ``yolo``: ``images/``, ``labels/*.txt``, ``data.yaml`` (ultralytics);
- ``labelstudio``: ``tasks_<kind>.json`` with predictions (+ generated configs);
- ``ndjson``: ``annotations.ndjson``, Labelbox-style, one line per label;
- ``conll``: ``annotations.conll``, IOB2 for text items (``engine.formats.spans``);
- ``classes``: ``classes.csv`` and ``classes.json``, one row per whole-item class;
- ``imagefolder``: each classified image copied to ``<class>/<file>``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.formats.records import WriteResult
from engine.store import ItemLabels, Store

Writer = Callable[[Iterable[ItemLabels], Path], WriteResult]


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and what it had to leave out (with reasons)."""

    fmt: str
    out_dir: Path
    files: tuple[Path, ...]
    n_items: int
    n_labels: int
    skipped: tuple[str, ...]


def _coco(_config: str | None) -> Writer:
    from engine.formats.coco import write_coco

    return write_coco


def _yolo(_config: str | None) -> Writer:
    from engine.formats.yolo_txt import write_yolo

    return write_yolo


def _ndjson(_config: str | None) -> Writer:
    from engine.formats.ndjson import write_ndjson

    return write_ndjson


def _labelstudio(labeling_config: str | None) -> Writer:
    from engine.formats.labelstudio_export import write_labelstudio

    return functools.partial(write_labelstudio, labeling_config=labeling_config)


def _conll(_config: str | None) -> Writer:
    from engine.formats.conll import write_conll

    return write_conll


def _classes(_config: str | None) -> Writer:
    from engine.formats.classes import write_classes

    return write_classes


def _imagefolder(_config: str | None) -> Writer:
    from engine.formats.imagefolder import write_imagefolder

    return write_imagefolder


WRITERS: dict[str, Callable[[str | None], Writer]] = {
    "coco": _coco,
    "yolo": _yolo,
    "labelstudio": _labelstudio,
    "ndjson": _ndjson,
    "conll": _conll,
    "classes": _classes,
    "imagefolder": _imagefolder,
}
EXPORT_FORMATS = tuple(WRITERS)


def export(
    store: Store,
    fmt: str,
    out_dir: str | Path,
    *,
    include_suggestions: bool = False,
    min_score: float = 0.0,
    labeling_config: str | None = None,
) -> ExportReport:
    """Write the store's accepted labels (plus pending suggestions if asked) as ``fmt``.

    ``labeling_config`` (Label Studio XML) is used by ``labelstudio`` only; by
    default a config is generated from the exported labels.
    """
    factory = WRITERS.get(fmt)
    if factory is None:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(WRITERS)}")
    if labeling_config is not None and fmt != "labelstudio":
        raise ValueError("labeling_config applies to the labelstudio format only")
    writer = factory(labeling_config)
    out_path = Path(out_dir)
    items = store.labeled_items(include_suggestions=include_suggestions, min_score=min_score)
    result = writer(items, out_path)
    return ExportReport(
        fmt=fmt,
        out_dir=out_path,
        files=tuple(result.files),
        n_items=result.n_items,
        n_labels=result.n_labels,
        skipped=tuple(result.skipped),
    )
