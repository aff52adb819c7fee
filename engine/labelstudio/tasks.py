"""A Label Studio task -> a store item with a content-hash id (and its pixels or text).

The labeling config's object tag names the task data key (``<Image
value="$image">`` -> ``task["data"]["image"]``). An image is fetched through
``MediaFetcher`` and becomes item ``digest_id(sha256)`` with its uri at the fetched
file; a text becomes item ``digest_id(sha256(utf-8 text))`` (the ids ``labelengine
ingest`` gives the same content, so a backlog pre-labeled by a job is reused).
Pixels are decoded only when a model needs them; the size comes from the header.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any

from engine.imaging.decode import RGBArray, decode_image, image_size
from engine.ingest import digest_id
from engine.labelstudio.config import ObjectTag
from engine.labelstudio.media import LabelStudioAccess, MediaFetcher
from engine.labelstudio.protocol import LsTaskIn
from engine.store import Store
from engine.types import Item


@dataclass
class TaskItem:
    """One task's item; ``data`` holds the image bytes (images only)."""

    item: Item
    data: bytes | None = field(default=None, repr=False)
    text: str | None = None
    max_pixels: int = 100_000_000

    @functools.cached_property
    def size_px(self) -> tuple[int, int] | None:
        """``(width, height)`` of an image (after EXIF orientation); ``None`` for text."""
        if self.data is None:
            return None
        return image_size(self.data, source=self.item.uri or self.item.item_id)

    @functools.cached_property
    def image(self) -> RGBArray:
        if self.data is None:
            raise ValueError(f"item {self.item.item_id!r} is a text, not an image")
        return decode_image(self.data, max_pixels=self.max_pixels, source=self.item.uri or "")

    def model_input(self) -> Any:
        return self.image if self.item.kind == "image" else self.text


def task_value(task: LsTaskIn, target: ObjectTag) -> Any:
    """The task's data for ``target``, or a ``ValueError`` naming the missing key."""
    if target.data_key not in task.data:
        keys = ", ".join(sorted(map(str, task.data))) or "none"
        raise ValueError(
            f'task {task.id} has no data key "{target.data_key}" (read by <{target.tag} '
            f'name="{target.name}" value="${target.data_key}">); its data keys: {keys}'
        )
    return task.data[target.data_key]


def load_task_item(
    task: LsTaskIn,
    target: ObjectTag,
    *,
    store: Store,
    fetcher: MediaFetcher,
    access: LabelStudioAccess | None,
    project: str | None,
    max_pixels: int,
) -> TaskItem:
    """Fetch the task's media (or read its text) and make sure the store holds its item."""
    value = task_value(task, target)
    metadata = {"label_studio": {"project": project, "task_id": task.id}}
    if target.kind == "text":
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f'task {task.id}: "{target.data_key}" must be non-empty text')
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
        item = Item(digest_id(digest), "text", text=value, metadata=metadata)
        store.add_items([item], [digest])
        return TaskItem(item, text=value)
    if not isinstance(value, str):
        raise ValueError(
            f'task {task.id}: "{target.data_key}" must be an image URL or path, '
            f"got {type(value).__name__}"
        )
    media = fetcher.fetch(value, fallback=access)
    item = Item(media.item_id, "image", uri=str(media.path), metadata=metadata)
    store.add_items([item], [media.sha256])
    return TaskItem(item, data=media.data, max_pixels=max_pixels)
