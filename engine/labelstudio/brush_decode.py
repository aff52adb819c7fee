"""Brush RLE decoding internals (the format is described in ``brush_rle``).

``parse_records`` first finds every record's start from six bits each (the
fast path: SDK and engine streams, and editor streams without long literal
runs), then reads all counts and values at once from 64-bit windows; a stream
it cannot handle that way is walked record by record in Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

ByteArray = npt.NDArray[np.uint8]
HEADER_BITS = 32 + 5 + 4 * 4


def as_bytes(rle: Sequence[int] | bytes | ByteArray) -> bytes:
    if isinstance(rle, bytes | bytearray):
        return bytes(rle)
    if isinstance(rle, list | tuple):
        try:
            return bytes(rle)  # checks 0..255 in C, far faster than numpy for a list
        except (TypeError, ValueError) as exc:
            raise ValueError("brush RLE must be a flat list of byte values (0..255)") from exc
    array = np.asarray(rle)
    if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
        raise ValueError("brush RLE must be a flat list of byte values (0..255)")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError("brush RLE must be a flat list of byte values (0..255)")
    return array.astype(np.uint8).tobytes()


def read_header(data: bytes) -> tuple[int, int, tuple[int, ...]]:
    """``(value count, word size, rle sizes)`` from the 53-bit header."""
    if len(data) * 8 < HEADER_BITS:
        raise ValueError(f"brush RLE is {len(data)} bytes, shorter than its 7-byte header")
    header = int.from_bytes(data[:7], "big") >> (56 - HEADER_BITS)
    word_size = ((header >> 16) & 0b11111) + 1
    if word_size > 8:
        raise ValueError(f"brush RLE word size is {word_size} bits; only byte streams (<= 8)")
    rle_sizes = tuple(((header >> (12 - 4 * k)) & 0b1111) + 1 for k in range(4))
    return header >> 21, word_size, rle_sizes


def parse_records(
    data: bytes, num: int, word_size: int, rle_sizes: tuple[int, ...]
) -> tuple[npt.NDArray[np.int64], ByteArray, npt.NDArray[np.int64]]:
    """Per-record lengths and repeated values, and ``[out_start, count, bit_position]``
    rows for literal records: the fast path when it applies, else the general walk."""
    starts = _record_starts(data, word_size, rle_sizes)
    if starts is None:
        return _walk_records(data, num, word_size, rle_sizes)
    return _read_records(data, starts, num, word_size, rle_sizes)


def _width_table(word_size: int, rle_sizes: tuple[int, ...]) -> list[int]:
    """A record's width in bits from its first six bits (0: the fast path cannot tell).

    The first three bits are the repeat flag and the size index; a repeat's width
    is fixed by them, a literal's needs its count, which the next three bits hold
    whole when the length field is at most 3 bits wide (the SDK's single values).
    """
    table = [0] * 64
    for six in range(64):
        head = six >> 3
        size = rle_sizes[head & 3]
        if head & 4:
            table[six] = 3 + size + word_size
        elif size <= 3:
            table[six] = 3 + size + (((six & 7) >> (3 - size)) + 1) * word_size
    return table


def _record_starts(
    data: bytes, word_size: int, rle_sizes: tuple[int, ...]
) -> npt.NDArray[np.int64] | None:
    """Bit positions of every record, found from six bits each; ``None`` when a record
    needs the general walk (a long literal run) or padding could pass for a record."""
    min_bits = 3 + min(rle_sizes) + word_size
    if min_bits <= 8:  # up to 8 zero padding bits could then parse as a record
        return None
    table = _width_table(word_size, rle_sizes)
    buf = data + bytes(2)
    last = len(data) * 8 - min_bits
    starts: list[int] = []
    append = starts.append
    from_bytes = int.from_bytes
    pos = HEADER_BITS
    while pos <= last:
        byte = pos >> 3
        width = table[(from_bytes(buf[byte : byte + 2], "big") >> (10 - (pos & 7))) & 63]
        if not width:
            return None
        append(pos)
        pos += width
    return np.array(starts, dtype=np.int64)


def _read_records(
    data: bytes,
    starts: npt.NDArray[np.int64],
    num: int,
    word_size: int,
    rle_sizes: tuple[int, ...],
) -> tuple[npt.NDArray[np.int64], ByteArray, npt.NDArray[np.int64]]:
    """Counts and values of the records at ``starts``, read all at once (64-bit windows)."""
    padded = np.frombuffer(data + bytes(8), dtype=np.uint8)
    windows = np.lib.stride_tricks.as_strided(padded, (padded.size - 7, 8), (1, 1))
    window = windows[starts >> 3].copy().view(">u8").ravel().astype(np.uint64)
    top = np.uint64(61) - (starts & 7).astype(np.uint64)
    head = (window >> top) & np.uint64(7)
    size = np.array(rle_sizes + rle_sizes, dtype=np.uint64)[head]
    shift = top - size
    counts = (((window >> shift) & ((np.uint64(1) << size) - np.uint64(1))) + 1).view(np.int64)
    values = (window >> (shift - np.uint64(word_size))) & np.uint64((1 << word_size) - 1)
    ends = np.cumsum(counts)
    n_records = int(np.searchsorted(ends, num)) + 1  # trailing bits past num are ignored
    if n_records > counts.size:
        decoded = int(ends[-1]) if ends.size else 0
        raise ValueError(f"brush RLE is truncated: {decoded} of {num} values decoded")
    if ends[n_records - 1] != num:
        overshoot = int(ends[n_records - 1])
        raise ValueError(f"brush RLE runs past its declared length ({overshoot} > {num} values)")
    counts, values, head = counts[:n_records], values[:n_records], head[:n_records]
    last_bits = int(starts[n_records - 1]) + _record_bits(
        head[-1], counts[-1], word_size, rle_sizes
    )
    if last_bits > len(data) * 8:
        raise ValueError(
            f"brush RLE is truncated: its last record needs {last_bits - len(data) * 8} more bits"
        )
    long_literal = np.flatnonzero((head < 4) & (counts > 1))
    literal_rows = np.stack(
        (
            (ends - counts)[long_literal],
            counts[long_literal],
            starts[long_literal] + 3 + size[long_literal].view(np.int64),
        ),
        axis=1,
    )
    values[long_literal] = 0
    return counts, values.astype(np.uint8), literal_rows


def _record_bits(head: np.uint64, count: np.int64, word_size: int, sizes: tuple[int, ...]) -> int:
    size = sizes[int(head) & 3]
    return 3 + size + (word_size if int(head) & 4 else int(count) * word_size)


def _walk_records(
    data: bytes, num: int, word_size: int, rle_sizes: tuple[int, ...]
) -> tuple[npt.NDArray[np.int64], ByteArray, npt.NDArray[np.int64]]:
    """Walk the records (one Python step each; runs, not pixels).

    Returns per-record lengths and repeated values (0 for literal records),
    and ``[out_start, count, bit_position]`` rows for literal records. The
    three header bits (repeat flag, size index) pick a precomputed length-field
    width and, for a repeat, the record's whole width; a record is one list
    append of ``n << 8 | value``. Reading past the end yields zero bits, which
    parse as literal records: that branch checks for truncation, so a stream
    cut short ends in a ``ValueError``, never a long walk through padding.
    """
    buf = data + bytes(8)
    end_bit = len(data) * 8
    word_mask = (1 << word_size) - 1
    sizes = tuple(rle_sizes[head & 3] for head in range(8))
    field_masks = tuple((1 << size) - 1 for size in sizes)
    repeat_bits = tuple(3 + size + word_size for size in sizes)
    records: list[int] = []
    literals: list[tuple[int, int, int]] = []
    append = records.append
    from_bytes = int.from_bytes
    pos, i = HEADER_BITS, 0
    while i < num:
        byte = pos >> 3
        top = 61 - (pos & 7)
        window = from_bytes(buf[byte : byte + 8], "big")
        head = (window >> top) & 7
        shift = top - sizes[head]
        n = ((window >> shift) & field_masks[head]) + 1
        if head & 4:
            append((n << 8) | ((window >> (shift - word_size)) & word_mask))
            pos += repeat_bits[head]
        else:
            literals.append((i, n, pos + 3 + sizes[head]))
            append(n << 8)
            pos += 3 + sizes[head] + n * word_size
            if pos > end_bit:
                break
        i += n
    if pos > end_bit:
        raise ValueError(f"brush RLE is truncated: its last record needs {pos - end_bit} more bits")
    if i != num:
        raise ValueError(f"brush RLE runs past its declared length ({i} > {num} values)")
    packed = np.array(records, dtype=np.int64)
    literal_rows = np.array(literals, dtype=np.int64).reshape(-1, 3)
    return packed >> 8, (packed & 0xFF).astype(np.uint8), literal_rows


def fill_literals(out: ByteArray, data: bytes, literals: np.ndarray, word_size: int) -> None:
    starts, counts, bit_pos = literals[:, 0], literals[:, 1], literals[:, 2]
    first = np.repeat(np.cumsum(counts) - counts, counts)
    offset = np.arange(int(counts.sum()), dtype=np.int64) - first
    out_index = np.repeat(starts, counts) + offset
    word_pos = np.repeat(bit_pos, counts) + offset * word_size
    bits = np.unpackbits(np.frombuffer(data + bytes(4), dtype=np.uint8))
    words = np.zeros(word_pos.size, dtype=np.uint16)
    for b in range(word_size):
        words = (words << 1) | bits[word_pos + b]
    out[out_index] = words.astype(np.uint8)
