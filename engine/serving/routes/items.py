"""Items: list, fetch one, and serve an image's bytes from inside the data roots."""

from __future__ import annotations

import logging
import mimetypes
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response

from engine.paths import PathNotAllowedError, read_confined
from engine.serving.deps import SettingsDep, StoreDep
from engine.serving.schemas.common import ErrorOut
from engine.serving.schemas.items import ItemOut, ItemPageOut
from engine.types import ItemKind

log = logging.getLogger(__name__)
MAX_OFFSET = 2**63 - 1  # what SQLite and PostgreSQL take as OFFSET

router = APIRouter(prefix="/items", tags=["items"])

ItemId = Annotated[str, Path(min_length=1, max_length=128, description="the item's id")]

# Compressed images are far smaller than their pixels; 4 bytes per pixel bounds
# any sane 8-bit encoding of an image the decoder would accept at all.
_BYTES_PER_PIXEL_BOUND = 4

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def image_media_type(data: bytes, uri: str) -> str:
    """The content type from the file's magic bytes, else its suffix."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    guessed, _ = mimetypes.guess_type(uri)
    return guessed or "application/octet-stream"


@router.get(
    "",
    response_model=ItemPageOut,
    summary="List items",
    description="Items in id order, one page at a time.",
)
def list_items(
    store: StoreDep,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="items to skip (a 64-bit integer)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
    kind: Annotated[ItemKind | None, Query(description="only images or only texts")] = None,
) -> ItemPageOut:
    items = store.list_items(offset=offset, limit=limit, kind=kind)
    return ItemPageOut(items=[ItemOut.of(item) for item in items], offset=offset, limit=limit)


@router.get(
    "/{item_id}",
    response_model=ItemOut,
    summary="Get one item",
    responses={404: {"model": ErrorOut, "description": "no such item"}},
)
def get_item(item_id: ItemId, store: StoreDep) -> ItemOut:
    return ItemOut.of(store.get_item(item_id))


@router.get(
    "/{item_id}/image",
    summary="The image bytes of an item",
    description="Read from inside the configured data roots; the content type follows "
    "the file's bytes.",
    response_class=Response,
    responses={
        200: {"content": {"image/*": {}}, "description": "the image file"},
        400: {"model": ErrorOut, "description": "the item is a text"},
        403: {"model": ErrorOut, "description": "the file lies outside the data roots"},
        404: {"model": ErrorOut, "description": "no such item, or its file is missing"},
        422: {"model": ErrorOut, "description": "the file is too large to serve"},
    },
)
def get_image(item_id: ItemId, store: StoreDep, settings: SettingsDep) -> Response:
    item = store.get_item(item_id)
    if item.kind != "image" or item.uri is None:
        raise HTTPException(400, f"item {item_id!r} is a {item.kind} item; it has no image")
    max_bytes = settings.max_image_pixels * _BYTES_PER_PIXEL_BOUND
    try:
        data = read_confined(item.uri, settings.resolved_data_roots, max_bytes=max_bytes)
    except PathNotAllowedError as exc:
        log.warning("image of item %r refused: %s", item_id, exc)
        raise HTTPException(
            403,
            f"the image of item {item_id!r} lies outside the configured data roots; "
            "an operator can allow its folder with LABELENGINE_DATA_ROOTS",
        ) from exc
    except FileNotFoundError as exc:
        raise HTTPException(404, f"the image file of item {item_id!r} is missing") from exc
    except ValueError as exc:  # over max_bytes
        raise HTTPException(
            422, f"the image file of item {item_id!r} is over the {max_bytes}-byte limit"
        ) from exc
    return Response(
        content=data,
        media_type=image_media_type(data, item.uri),
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
