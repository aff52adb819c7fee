"""What an export writes: each item's accepted labels, gathered from the store.

A label is exported when a person or policy accepted it:

- a suggestion with status ``accepted`` or ``machine_accepted`` (as suggested);
- a suggestion with status ``edited`` (its latest ``edit`` feedback's region and
  label replace the suggested ones where given);
- item-level ``accept`` / ``edit`` feedback that carries a label (a region a
  person drew, or a whole-item class when it has no region).

``include_suggestions=True`` adds the still ``pending`` suggestions of the
item's latest prediction; ``rejected`` ones are never exported. ``min_score``
filters labels that no person looked at (``pending`` and ``machine_accepted``)
by model score; a person's decision is kept whatever the score.

An item is exported when it has labels or was reviewed (any feedback other
than ``skip``): a reviewed item with no labels is a true negative (an empty
YOLO label file, a COCO image without annotations).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from sqlalchemy import select

from engine.imaging.decode import image_size
from engine.store import FeedbackRecord, NotFoundError, Store, SuggestionRecord, schema
from engine.types import Feedback, Item, Mask, Region

LabelSource = Literal["accepted", "edited", "machine_accepted", "pending", "feedback"]
_SOURCES: dict[str, LabelSource] = {
    "accepted": "accepted",
    "edited": "edited",
    "machine_accepted": "machine_accepted",
    "pending": "pending",
}
_UNREVIEWED: tuple[LabelSource, ...] = ("pending", "machine_accepted")


@dataclass(frozen=True)
class ExportLabel:
    """One label to write: the project's label, its region in pixels, where it came from."""

    label: str
    region: Region | None
    score: float
    source: LabelSource
    model_version: str | None = None
    suggestion_id: int | None = None

    @property
    def reviewed(self) -> bool:
        """True when a person accepted or drew it (not only a model or a policy)."""
        return self.source not in _UNREVIEWED


@dataclass(frozen=True)
class ItemLabels:
    """An item with its labels; ``item_score`` is its queue score (higher = label first)."""

    item: Item
    labels: tuple[ExportLabel, ...]
    item_score: float | None = None


def collect_labels(
    store: Store, *, include_suggestions: bool = False, min_score: float = 0.0
) -> Iterator[ItemLabels]:
    """Every item worth exporting, in item id order, with its labels (see module doc)."""
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be in [0, 1], got {min_score}")
    return _collect(store, include_suggestions, min_score)


def _collect(store: Store, include_suggestions: bool, min_score: float) -> Iterator[ItemLabels]:
    for item in store.iter_items():
        feedback = store.feedback_for(item.item_id)
        labels = _item_labels(store, item, feedback, include_suggestions, min_score)
        reviewed = any(record.feedback.action != "skip" for record in feedback)
        if labels or reviewed:
            yield ItemLabels(item, tuple(labels), _item_score(store, item.item_id))


def _item_labels(
    store: Store,
    item: Item,
    feedback: list[FeedbackRecord],
    include_suggestions: bool,
    min_score: float,
) -> list[ExportLabel]:
    edits: dict[int, Feedback] = {
        r.feedback.suggestion_id: r.feedback
        for r in feedback
        if r.feedback.action == "edit" and r.feedback.suggestion_id is not None
    }
    records = {r.suggestion_id: r for r in store.suggestions_for(item.item_id)}
    for record in feedback:  # judged suggestions of older predictions count too
        sid = record.feedback.suggestion_id
        if sid is not None and sid not in records:
            try:
                records[sid] = store.get_suggestion(sid)
            except NotFoundError:
                continue
    labels = [
        label
        for record in sorted(records.values(), key=lambda r: r.suggestion_id)
        if (label := _from_suggestion(record, edits, include_suggestions)) is not None
        and (label.reviewed or label.score >= min_score)
    ]
    labels.extend(
        ExportLabel(r.feedback.label, r.feedback.region, 1.0, "feedback", r.feedback.model_version)
        for r in feedback
        if r.feedback.suggestion_id is None
        and r.feedback.action in ("accept", "edit")
        and r.feedback.label
    )
    return labels


def _from_suggestion(
    record: SuggestionRecord, edits: dict[int, Feedback], include_suggestions: bool
) -> ExportLabel | None:
    source = _SOURCES.get(record.status)
    if source is None or (source == "pending" and not include_suggestions):
        return None
    suggestion = record.suggestion
    label, region = suggestion.label, suggestion.region
    edit = edits.get(record.suggestion_id)
    if source == "edited" and edit is not None:
        label = edit.label or label
        region = edit.region or region
    return ExportLabel(
        label, region, suggestion.score, source, suggestion.model_version, record.suggestion_id
    )


def _item_score(store: Store, item_id: str) -> float | None:
    # The Store has no getter for the queue score yet; read the column directly.
    with store.engine.connect() as conn:
        score = conn.execute(
            select(schema.items.c.score).where(schema.items.c.item_id == item_id)
        ).scalar_one_or_none()
    return None if score is None else float(score)


# -- image sizes ----------------------------------------------------------------


def local_path(uri: str | None) -> Path | None:
    """The local file behind a path or ``file://`` URI, ``None`` for other schemes."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if len(parsed.scheme) > 1:
        return None
    return Path(uri)


def image_size_px(item: Item, regions: Iterable[Region | None] = ()) -> tuple[int, int] | None:
    """``(width, height)`` of an image item, after EXIF orientation, or ``None`` if unknown.

    From the local file's header; else from a mask among ``regions``; else from
    ``width_px`` / ``height_px`` (or ``width`` / ``height``) in its metadata.
    """
    path = local_path(item.uri)
    if path is not None and path.is_file():
        return image_size(path.read_bytes(), source=str(path))
    for region in regions:
        if isinstance(region, Mask):
            return region.width_px, region.height_px
    meta = item.metadata
    width = meta.get("width_px", meta.get("width"))
    height = meta.get("height_px", meta.get("height"))
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return None


@dataclass
class WriteResult:
    """What one writer did: files written, counts, and why anything was left out."""

    files: list[Path] = field(default_factory=list)
    n_items: int = 0
    n_labels: int = 0
    skipped: list[str] = field(default_factory=list)


def entry_size_px(entry: ItemLabels, result: WriteResult) -> tuple[int, int] | None:
    """``image_size_px`` for an export entry; a failure is recorded as a skip reason."""
    try:
        size = image_size_px(entry.item, (label.region for label in entry.labels))
    except ValueError as exc:  # ImageDecodeError: a corrupt or unreadable file
        result.skipped.append(f"{entry.item.item_id}: {exc}")
        return None
    if size is None:
        result.skipped.append(f"{entry.item.item_id}: image size unknown (no local file)")
    return size
