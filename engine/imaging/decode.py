"""Robust image decoding: bytes in, ``HxWx3`` uint8 RGB out, or a clear error.

Policies (one place, so every caller decodes the same way):

- EXIF orientation is applied, so pixel coordinates match what a viewer shows.
- Colour: CMYK, YCbCr, palette, grey and bilevel images become RGB.
- Alpha (RGBA, LA, PA, palette with transparency) is composited over white;
  a transparent region reads as a white page, not as the hidden colour data.
- 16-bit images (``I;16*``, and ``I`` holding 0..65535) are scaled to 8 bits
  by ``round(v * 255 / 65535)``; other ``I`` and ``F`` images are min-max
  stretched to 0..255. Nothing is clipped.
- Multi-frame files (GIF, TIFF, MPO) give their first frame.
- The pixel count is checked from the header *before* any pixel is decoded.
  Pillow's global ``Image.MAX_IMAGE_PIXELS`` is left untouched; Pillow still
  refuses anything over twice its value (~179 Mpx) when opening, reported as
  the same error, and warns (``DecompressionBombWarning``) above ~89 Mpx.
- The array is read-only (``np.asarray`` over Pillow's buffer, no extra copy;
  the same contract as arrays that come out of Ray's object store). Call
  ``.copy()`` to draw on it.

Every failure raises ``ImageDecodeError`` (a ``ValueError``) whose message says
what is wrong and names ``source`` (a path or URI, for the job's error log).
"""

from __future__ import annotations

import hashlib
import io
import struct
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import numpy as np
import numpy.typing as npt

from engine.types import Item, Mask, Region

if TYPE_CHECKING:
    from PIL import Image as PILImage

RGBArray = npt.NDArray[np.uint8]
BytesLike = bytes | bytearray | memoryview

DEFAULT_MAX_PIXELS = 100_000_000
_ORIENTATION_TAG = 0x0112
_SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# What Pillow raises for damaged data, depending on format and where it breaks.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)


class ImageDecodeError(ValueError):
    """The bytes are not a decodable image (empty, truncated, unknown, too large)."""


def sha256_hex(data: BytesLike) -> str:
    """Hex sha256 of ``data``: the content address of an image."""
    return hashlib.sha256(data).hexdigest()


def image_size(data: BytesLike, *, source: str = "") -> tuple[int, int]:
    """``(width_px, height_px)`` from the header alone, after EXIF orientation.

    Cheap: no pixel data is decoded. The size is the one ``decode_image``
    returns (``height, width`` = its array's first two dimensions).
    """
    image = _open(data, source)
    with image:
        width_px, height_px = image.size
        if _orientation(image) in _SWAPPED_ORIENTATIONS:
            return height_px, width_px
        return width_px, height_px


def decode_image(
    data: BytesLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, source: str = ""
) -> RGBArray:
    """Decode ``data`` to a read-only C-contiguous ``(height, width, 3)`` uint8 RGB array.

    Raises ``ImageDecodeError`` for empty, truncated, unknown or over-large
    (``width * height > max_pixels``) input; see the module docstring for the
    colour, alpha, bit-depth and orientation policies.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    image = _open(data, source)
    with image:
        width_px, height_px = image.size
        if width_px * height_px > max_pixels:
            raise ImageDecodeError(
                f"{_name(source)}: image is {width_px}x{height_px} = {width_px * height_px} "
                f"pixels, over the limit of {max_pixels} pixels (max_pixels); refusing to "
                "decode (possible decompression bomb)"
            )
        try:
            image.load()
            return _to_rgb_array(_oriented(image, source))
        except ImageDecodeError:
            raise
        except MemoryError as exc:
            raise ImageDecodeError(f"{_name(source)}: out of memory decoding image") from exc
        except _DECODE_ERRORS as exc:
            raise ImageDecodeError(
                f"{_name(source)}: cannot decode {image.format or 'image'} data "
                f"({type(exc).__name__}: {exc}); the file is likely truncated or corrupt"
            ) from exc


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


def read_local_image(uri: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> RGBArray:
    """Read and decode a local file given as a path or a ``file://`` URI.

    Other schemes (``s3://``, ``http://``) are a ``ValueError``: fetching is
    the job's reader's business, models only read local files.
    """
    path = local_path(uri)
    if path is None:
        raise ValueError(f"{uri!r}: only local paths and file:// URIs can be read here")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{uri!r}: cannot read file: {exc}") from exc
    return decode_image(data, max_pixels=max_pixels, source=uri)


def image_input(item: Item, given: Any) -> RGBArray:
    """A model's image for ``item``: ``given`` (already decoded) checked, else read from
    the item's local ``uri``."""
    if given is not None:
        return check_rgb_image(given, source=item.item_id)
    if item.kind != "image" or not item.uri:
        raise ValueError(f"item {item.item_id!r} is not an image item with a uri")
    return read_local_image(item.uri)


def check_rgb_image(image: Any, *, source: str = "") -> RGBArray:
    """Return ``image`` if it is a non-empty ``HxWx3`` uint8 array, else ``ValueError``."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{_name(source)}: expected a uint8 numpy image, got {kind}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{_name(source)}: expected an HxWx3 RGB image, got shape {image.shape}")
    return image


def _name(source: str) -> str:
    return repr(source) if source else "<bytes>"


def _open(data: BytesLike, source: str) -> PILImage.Image:
    from PIL import Image

    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageDecodeError(f"{_name(source)}: expected image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageDecodeError(f"{_name(source)}: empty data (0 bytes), not an image")
    try:
        return _pillow_open()(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(
            f"{_name(source)}: refusing to decode: {exc} (Pillow's hard limit)"
        ) from exc
    except Image.UnidentifiedImageError as exc:
        head = bytes(data[:16])
        raise ImageDecodeError(
            f"{_name(source)}: not a recognised image format ({len(data)} bytes, starting {head!r})"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise ImageDecodeError(
            f"{_name(source)}: unreadable image header ({type(exc).__name__}: {exc})"
        ) from exc


def _pillow_open() -> Callable[..., PILImage.Image]:
    """Pillow's own ``Image.open``, even after ultralytics has replaced it.

    Importing ultralytics swaps ``PIL.Image.open`` for a wrapper that, on the
    first unidentifiable file, pip-installs ``pi-heif`` (network, or a
    ``ModuleNotFoundError`` offline). A corrupt file must be a clean
    ``ImageDecodeError`` here, so we call the original it keeps.
    """
    from PIL import Image

    opener = Image.open
    if getattr(opener, "__module__", None) == "PIL.Image":
        return opener
    patches = sys.modules.get("ultralytics.utils.patches")
    original = getattr(patches, "_image_open", None)
    if callable(original) and getattr(original, "__module__", None) == "PIL.Image":
        return original
    return opener


def _orientation(image: PILImage.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS:
        return 1  # unreadable EXIF: show the pixels as stored
    return int(value) if isinstance(value, int) else 1


def _oriented(image: PILImage.Image, source: str) -> PILImage.Image:
    from PIL import ImageOps

    if _orientation(image) == 1:
        return image
    transposed = ImageOps.exif_transpose(image)
    if transposed is None:  # pragma: no cover - only with in_place=True
        raise ImageDecodeError(f"{_name(source)}: EXIF transpose failed")
    return transposed


def _to_rgb_array(image: PILImage.Image) -> RGBArray:
    mode = image.mode
    if mode == "RGB":
        return _as_array(image)
    if mode in _SIXTEEN_BIT_MODES or mode in {"I", "F"}:
        return _grey_to_rgb(_wide_to_uint8(np.asarray(image), mode))
    if mode == "P":
        mode = "RGBA" if "transparency" in image.info else "RGB"
        image = image.convert(mode)
    if mode in _ALPHA_MODES:
        return _composite_over_white(image)
    return _as_array(image.convert("RGB"))


def _as_array(image: PILImage.Image) -> RGBArray:
    return _read_only(np.ascontiguousarray(np.asarray(image, dtype=np.uint8)))


def _read_only(array: RGBArray) -> RGBArray:
    array.flags.writeable = False
    return array


def _composite_over_white(image: PILImage.Image) -> RGBArray:
    from PIL import Image

    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    page = Image.new("RGB", rgba.size, (255, 255, 255))
    page.paste(rgba, mask=rgba.getchannel("A"))
    return _as_array(page)


def _wide_to_uint8(values: np.ndarray, mode: str) -> npt.NDArray[np.uint8]:
    """16-bit -> round(v * 255 / 65535); other ranges are min-max stretched."""
    if mode in _SIXTEEN_BIT_MODES or (
        mode == "I" and values.size and values.min() >= 0 and values.max() <= 65535
    ):
        wide = values.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    as_float = values.astype(np.float64)
    finite = np.isfinite(as_float)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = float(as_float[finite].min()), float(as_float[finite].max())
    span = high - low if high > low else 1.0
    scaled = np.where(finite, (as_float - low) * (255.0 / span), 0.0)
    return np.rint(scaled).astype(np.uint8)


def _grey_to_rgb(grey: npt.NDArray[np.uint8]) -> RGBArray:
    return _read_only(np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2)))


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
