"""Ingest images and texts: a folder, a glob, or a manifest (JSONL / CSV).

Item ids are stable: the id given in a manifest, else a content hash (sha256
of the file bytes or of the UTF-8 text), so re-ingesting is idempotent. Image
paths are confined to the configured data roots. A bad row is reported and
skipped; the rest is ingested.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.paths import PathNotAllowedError, confine
from engine.store import Store
from engine.types import Item

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_BATCH = 500


@dataclass
class IngestReport:
    added: int = 0
    existing: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def seen(self) -> int:
        return self.added + self.existing


ITEM_ID_HEX_DIGITS = 24


def digest_id(sha256_hex: str) -> str:
    """The item id of content whose sha256 is ``sha256_hex``: its first 24 hex digits.

    The one item-id rule: ingest, Label Studio tasks and media all go through it.
    """
    return sha256_hex[:ITEM_ID_HEX_DIGITS]


def content_id(data: bytes) -> str:
    """Stable item id from content (``digest_id`` of its sha256)."""
    return digest_id(hashlib.sha256(data).hexdigest())


def ingest(store: Store, source: str, roots: Sequence[Path]) -> IngestReport:
    """Ingest ``source``: a directory, a glob, ``*.jsonl`` or ``*.csv`` manifest."""
    report = IngestReport()
    pending: list[tuple[Item, str | None]] = []
    for entry in _entries(source, roots, report):
        pending.append(entry)
        if len(pending) >= _BATCH:
            _flush(store, pending, report)
    _flush(store, pending, report)
    return report


def _flush(store: Store, pending: list[tuple[Item, str | None]], report: IngestReport) -> None:
    if not pending:
        return
    unique = {item.item_id: (item, digest) for item, digest in pending}
    added = store.add_items([u[0] for u in unique.values()], [u[1] for u in unique.values()])
    report.added += added
    report.existing += len(pending) - added
    pending.clear()


def _entries(
    source: str, roots: Sequence[Path], report: IngestReport
) -> Iterator[tuple[Item, str | None]]:
    path = Path(source).expanduser()
    if any(ch in source for ch in "*?["):
        matches = sorted(glob.glob(str(path), recursive=True))
        yield from _image_files([Path(m) for m in matches if Path(m).is_file()], roots, report)
        return
    confined = confine(path, roots)
    if confined.is_dir():
        files = sorted(
            p for p in confined.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        yield from _image_files(files, roots, report)
    elif confined.suffix.lower() in {".jsonl", ".ndjson"}:
        yield from _manifest_rows(_jsonl_rows(confined, report), confined, roots, report)
    elif confined.suffix.lower() == ".csv":
        yield from _manifest_rows(_csv_rows(confined), confined, roots, report)
    elif confined.is_file():
        yield from _image_files([confined], roots, report)
    else:
        raise FileNotFoundError(f"{source}: no such file or directory")


def _image_files(
    files: list[Path], roots: Sequence[Path], report: IngestReport
) -> Iterator[tuple[Item, str | None]]:
    for file in files:
        try:
            item = _image_item(str(file), None, {}, roots)
        except (OSError, ValueError) as exc:
            report.errors.append((str(file), str(exc)))
            continue
        yield item


def _image_item(
    uri: str,
    item_id: str | None,
    metadata: dict[str, Any],
    roots: Sequence[Path],
    base: Path | None = None,
) -> tuple[Item, str | None]:
    path = confine(uri, roots, base=base)
    if not path.is_file():
        raise FileNotFoundError(f"{uri}: no such file")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    item = Item(
        item_id=item_id or digest_id(digest), kind="image", uri=str(path), metadata=metadata
    )
    return item, digest


def _jsonl_rows(path: Path, report: IngestReport) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            where = f"{path}:{line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                report.errors.append((where, f"not UTF-8 (byte {exc.start + 1} of the line)"))
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                report.errors.append((where, f"not valid JSON: {exc.msg}"))
                continue
            if not isinstance(row, dict):
                report.errors.append((where, "each line must be a JSON object"))
                continue
            yield where, row


def _csv_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # a quoted field may span lines: the file must decode
        line_no = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line_no}: not UTF-8; save the manifest as UTF-8") from exc
    for line_no, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        yield f"{path}:{line_no}", dict(row)


def _manifest_rows(
    rows: Iterator[tuple[str, dict[str, Any]]],
    manifest: Path,
    roots: Sequence[Path],
    report: IngestReport,
) -> Iterator[tuple[Item, str | None]]:
    for where, row in rows:
        try:
            yield _manifest_item(row, manifest.parent, roots)
        except (OSError, ValueError, PathNotAllowedError) as exc:
            report.errors.append((where, str(exc)))


def _manifest_item(
    row: dict[str, Any], base: Path, roots: Sequence[Path]
) -> tuple[Item, str | None]:
    item_id = row.get("id") or row.get("item_id") or None
    metadata = row.get("metadata") or {}
    if isinstance(metadata, str):
        metadata = json.loads(metadata) if metadata.strip() else {}
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be a JSON object")
    if "text" in row and row["text"] is not None:
        text = row["text"]
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return Item(
            item_id=str(item_id or digest_id(digest)), kind="text", text=text, metadata=metadata
        ), digest
    uri = row.get("uri") or row.get("image")
    if not uri:
        raise ValueError("row needs a 'uri' (image) or 'text' field")
    return _image_item(str(uri), str(item_id) if item_id else None, metadata, roots, base=base)
