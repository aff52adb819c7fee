"""Label Studio brush RLE: the bit-packed run-length code of ``brushlabels`` ``rle``.

The format (thi-ng ``rle-pack``, as Label Studio and its SDK write it) packs a
flat ``uint8`` array (an ``HxWx4`` RGBA image, row-major) into a bit stream:

- header: 32 bits value count, 5 bits ``word_size - 1``, then four 4-bit
  ``rle_size - 1`` fields (the bit widths a run length may use);
- records until the count is reached: 1 bit ``repeat`` flag, 2 bits index into
  the rle sizes, ``rle_sizes[index]`` bits ``n - 1``; then one word repeated
  ``n`` times (flag 1) or ``n`` literal words (flag 0);
- the stream is zero-padded to whole bytes and written as a list of byte values.

The encoder here writes exactly the bytes of the SDK's ``encode_rle`` /
``mask2rle`` (word size 8, rle sizes 3, 4, 8, 16, a single value as a literal
record, runs over 65536 split, one to eight padding bits), vectorised with
numpy. The decoder reads any word size up to 8 bits and any rle sizes, so it
also reads the Label Studio editor's own encodings.

A mask is stored with 255 in all four channels of a painted pixel; reading a
mask back takes the alpha channel, ``alpha > 0`` (as the SDK's converters do).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from engine.labelstudio.brush_decode import (
    HEADER_BITS,
    as_bytes,
    fill_literals,
    parse_records,
    read_header,
)

ByteArray = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]

RLE_SIZES_BITS = (3, 4, 8, 16)
WORD_SIZE_BITS = 8
_MAX_VALUES = 2**32 - 1
_MAX_CHUNK = 2**16
# Record classes: single literal value, then repeats of 2-8, 9-16, 17-256, > 256.
_PREFIX = np.array([0b000, 0b100, 0b101, 0b110, 0b111], dtype=np.uint64)
_LENGTH_BITS = np.array([3, 3, 4, 8, 16], dtype=np.uint64)


def encode_brush_rle(values: npt.ArrayLike) -> list[int]:
    """Encode a flat array of byte values (``0..255``) as brush RLE bytes.

    Byte for byte what ``label_studio_sdk.converter.brush.encode_rle`` returns.
    """
    flat = _check_values(values)
    starts = _run_starts(flat)
    lengths = np.diff(np.append(starts, flat.size))
    return _encode_runs(lengths, flat[starts], flat.size)


def mask_to_brush_rle(mask: npt.ArrayLike) -> list[int]:
    """Brush RLE of an ``HxW`` mask: nonzero pixels become RGBA ``(255, 255, 255, 255)``.

    Equals the SDK's ``mask2rle(mask.astype(np.uint8) * 255)`` without building
    the four-times-larger RGBA array: runs are found on the mask and scaled.
    """
    array = np.asarray(mask)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"mask must be a non-empty 2-D HxW array, got shape {array.shape}")
    if array.size * 4 > _MAX_VALUES:
        raise ValueError(f"mask of {array.shape} is too large for brush RLE (2**32 values)")
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype != np.bool_:
        flat = flat != 0
    starts = _run_starts(flat)
    lengths_px = np.diff(starts, append=flat.size)
    if lengths_px.max() * 4 > _MAX_CHUNK:
        values = flat[starts].view(np.uint8) * np.uint8(255)
        return _encode_runs(lengths_px * 4, values, flat.size * 4)
    # Runs alternate off / on: look each up in the table for its value.
    lengths_px[0 if flat[0] else 1 :: 2] += _MAX_CHUNK // 4 + 1
    codes, n_bits = _mask_tables()
    return _pack(_header(flat.size * 4), codes[lengths_px], n_bits[lengths_px])


def brush_rle_to_mask(
    rle: Sequence[int] | bytes | ByteArray, height_px: int, width_px: int
) -> BoolArray:
    """Decode brush RLE to an ``HxW`` bool mask (alpha channel > 0)."""
    if height_px <= 0 or width_px <= 0:
        raise ValueError(f"mask size must be positive, got {height_px}x{width_px}")
    data = as_bytes(rle)
    num, word_size, rle_sizes = read_header(data)
    expected = height_px * width_px * 4
    if num != expected:
        raise ValueError(
            f"brush RLE holds {num} values, but a {height_px}x{width_px} RGBA image "
            f"needs {expected}; original_height/original_width do not match the mask"
        )
    lengths, values, literals = parse_records(data, num, word_size, rle_sizes)
    if literals.size:  # the editor's own literal runs: decode every value
        out = np.repeat(values, lengths)
        fill_literals(out, data, literals, word_size)
        return (out[3::4] > 0).reshape(height_px, width_px)
    # Runs only: repeat each run's alpha over the pixels whose 4th value it covers.
    # Value 4k + 3 is pixel k's alpha; run [s, e) holds it when s <= 4k + 3 < e, i.e.
    # k in [ceil((s - 3) / 4), ceil((e - 3) / 4)) = [s // 4, e // 4).
    ends = np.cumsum(lengths)
    alpha = np.repeat(values > 0, (ends >> 2) - ((ends - lengths) >> 2))
    return alpha.reshape(height_px, width_px)


def decode_brush_rle(rle: Sequence[int] | bytes | ByteArray) -> ByteArray:
    """Decode brush RLE bytes to the flat ``uint8`` array it encodes.

    Same output as ``label_studio_sdk.converter.brush.decode_rle``; a stream
    that is truncated or runs past its declared length is a ``ValueError``.
    """
    data = as_bytes(rle)
    num, word_size, rle_sizes = read_header(data)
    lengths, values, literals = parse_records(data, num, word_size, rle_sizes)
    out = np.repeat(values, lengths)
    if literals.size:
        fill_literals(out, data, literals, word_size)
    return out


# -- encoder ------------------------------------------------------------------


def _check_values(values: npt.ArrayLike) -> ByteArray:
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"brush RLE encodes a non-empty 1-D array, got shape {array.shape}")
    if array.size > _MAX_VALUES:
        raise ValueError(f"brush RLE holds at most 2**32 - 1 values, got {array.size}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"brush RLE values must be integers in 0..255, got dtype {array.dtype}")
    if array.min() < 0 or array.max() > 255:
        raise ValueError("brush RLE values must lie in 0..255 (8-bit words)")
    return array.astype(np.uint8)


def _run_starts(flat: npt.NDArray[np.generic]) -> npt.NDArray[np.intp]:
    """Indices where a new run begins (always 0 first).

    Sparse changes (most masks) are found eight flags at a time: only the
    ``uint64`` words of the flag array that hold a change are expanded.
    """
    n = flat.size
    changed = np.empty(-(-n // 8) * 8, dtype=np.bool_)
    changed[0] = True
    np.not_equal(flat[1:], flat[:-1], out=changed[1:n])
    changed[n:] = False
    as_words = changed.view(np.uint64)
    busy = as_words.astype(np.bool_)
    if np.count_nonzero(busy) * 4 > busy.size:
        return np.flatnonzero(changed)
    words = np.flatnonzero(busy)
    hits = np.flatnonzero(as_words[words].view(np.bool_))
    return words[hits >> 3] * 8 + (hits & 7)


def _encode_runs(lengths: npt.NDArray[np.integer], values: ByteArray, num: int) -> list[int]:
    hi, n_bits, run = _record_tables(lengths.astype(np.int64))
    codes = hi | (values if run is None else values[run]).astype(np.uint64)
    return _pack(_header(num), codes, n_bits)


def _header(num: int) -> int:
    header = (num << 21) | ((WORD_SIZE_BITS - 1) << 16)
    for k, size in enumerate(RLE_SIZES_BITS):
        header |= (size - 1) << (12 - 4 * k)
    return header


@functools.cache
def _mask_tables() -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Record code and width per mask run of ``0..16384`` pixels: off runs, then on runs."""
    hi, n_bits = _length_tables()
    hi_px, n_bits_px = hi[::4], n_bits[::4]
    codes = np.concatenate((hi_px, hi_px | np.uint64(255)))
    return codes, np.concatenate((n_bits_px, n_bits_px))


@functools.cache
def _length_tables() -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Per run length ``1..65536``: the record's bits above its value, and its width."""
    length = np.arange(_MAX_CHUNK + 1, dtype=np.uint64)
    run_class = np.searchsorted(np.array([1, 8, 16, 256]), length, side="left")
    length_bits = _LENGTH_BITS[run_class]
    field = np.where(run_class == 0, 0, length - 1).astype(np.uint64)
    hi = (_PREFIX[run_class] << (length_bits + np.uint64(8))) | (field << np.uint64(8))
    return hi, length_bits + np.uint64(11)


def _record_tables(
    lengths: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.intp] | None]:
    """Record codes without values, widths, and the run of each record (``None``: 1:1)."""
    hi_table, bits_table = _length_tables()
    if lengths.max() <= _MAX_CHUNK:
        return hi_table[lengths], bits_table[lengths], None
    # A run over 65536 is 65536-long records then the rest, all in the 16-bit class.
    n_full = np.where(lengths > _MAX_CHUNK, (lengths - 1) // _MAX_CHUNK, 0)
    run = np.repeat(np.arange(lengths.size), n_full + 1)
    first = np.cumsum(n_full + 1) - (n_full + 1)
    chunk = np.arange(run.size) - first[run]
    is_long = n_full[run] > 0
    chunk_len = np.where(chunk < n_full[run], _MAX_CHUNK, (lengths - n_full * _MAX_CHUNK)[run])
    hi = hi_table[chunk_len]
    hi[is_long] = (np.uint64(0b111) << np.uint64(24)) | (
        (chunk_len[is_long] - 1).astype(np.uint64) << np.uint64(8)
    )
    n_bits = np.where(is_long, np.uint64(27), bits_table[chunk_len])
    return hi, n_bits, run


def _pack(header: int, codes: npt.NDArray[np.uint64], n_bits: npt.NDArray[np.uint64]) -> list[int]:
    """Concatenate header and records MSB first, zero-pad as the SDK does, as byte values.

    A record (<= 27 bits) ending at stream bit ``e`` lies inside the 64-bit
    window of 32-bit words ``w - 1, w`` with ``w = (e - 1) // 32``; shifted
    there by ``-e mod 32``, its high half ORs into word ``w - 1``, its low half
    into word ``w``. Records never share bits, so summing the halves per word
    (``bincount``, exact in float64 below 2**53) is their bitwise OR.
    """
    ends = np.cumsum(n_bits)
    ends += np.uint64(HEADER_BITS)
    total_bits = int(ends[-1])
    shift = np.uint64(0) - ends
    shift &= np.uint64(31)
    placed = codes << shift
    ends -= np.uint64(1)
    ends >>= np.uint64(5)
    word = ends.view(np.int64)
    n_words = total_bits // 32 + 1
    high = np.bincount(
        word, weights=(placed >> np.uint64(32)).astype(np.float64), minlength=n_words
    )
    placed &= np.uint64(0xFFFFFFFF)
    words = np.bincount(word, weights=placed.astype(np.float64), minlength=n_words)
    words[:-1] += high[1:]
    header_placed = header << (64 - HEADER_BITS)
    words[0] += header_placed >> 32
    words[1] += header_placed & 0xFFFFFFFF
    as_bytes = words.astype(">u4").view(np.uint8)
    return list(as_bytes[: total_bits // 8 + 1].tobytes())
