"""Brush RLE codec: round trips, and byte-for-byte agreement with the Label Studio SDK."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter import brush

from engine.labelstudio.brush_rle import (
    brush_rle_to_mask,
    decode_brush_rle,
    encode_brush_rle,
    mask_to_brush_rle,
)


def _fragmented_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random blocks of random sizes plus salt noise: many short and some long runs."""
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(40):
        y, x = rng.integers(0, height), rng.integers(0, width)
        mask[y : y + rng.integers(1, 30), x : x + rng.integers(1, 60)] ^= True
    mask ^= rng.random((height, width)) < 0.02
    return mask


class _BitWriter:
    """Independent thi-ng rle-pack writer (any rle sizes, literal runs of any length)."""

    def __init__(self) -> None:
        self.bits: list[str] = []

    def put(self, value: int, n_bits: int) -> None:
        self.bits.append(format(value, f"0{n_bits}b"))

    def to_bytes(self) -> list[int]:
        text = "".join(self.bits)
        text += "0" * (-len(text) % 8)
        return [int(text[i : i + 8], 2) for i in range(0, len(text), 8)]


def _random_stream(rng: np.random.Generator) -> tuple[list[int], np.ndarray]:
    """A stream mixing literal and repeat records, as Label Studio's editor writes them."""
    rle_sizes = [int(v) for v in rng.integers(1, 17, size=4)]
    values: list[int] = []
    records = []
    for _ in range(int(rng.integers(1, 40))):
        index = int(rng.integers(0, 4))
        n = int(rng.integers(1, 2 ** rle_sizes[index] + 1))
        n = min(n, 300)
        repeat = bool(rng.integers(0, 2))
        words = [int(rng.integers(0, 256))] * n if repeat else rng.integers(0, 256, n).tolist()
        records.append((repeat, index, n, words))
        values.extend(words)
    writer = _BitWriter()
    writer.put(len(values), 32)
    writer.put(8 - 1, 5)
    for size in rle_sizes:
        writer.put(size - 1, 4)
    for repeat, index, n, words in records:
        writer.put(int(repeat), 1)
        writer.put(index, 2)
        writer.put(n - 1, rle_sizes[index])
        for word in words[:1] if repeat else words:
            writer.put(word, 8)
    return writer.to_bytes(), np.array(values, dtype=np.uint8)


def test_encoding_is_byte_identical_to_the_sdk_and_decodes_both_ways() -> None:
    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(1, 4000))
        if trial % 3 == 0:
            values = rng.integers(0, 256, n).astype(np.uint8)  # mostly single values
        else:
            values = np.repeat(rng.integers(0, 4, 60), rng.integers(1, 600, 60)).astype(np.uint8)
        ours, sdk = encode_brush_rle(values), brush.encode_rle(values)
        assert ours == sdk
        np.testing.assert_array_equal(decode_brush_rle(sdk), values)
        np.testing.assert_array_equal(brush.decode_rle(ours), values)


@pytest.mark.parametrize("length", [1, 2, 8, 9, 16, 17, 256, 257, 65536, 65537, 131072, 131073])
def test_run_length_class_boundaries_match_the_sdk(length: int) -> None:
    values = np.concatenate([np.full(length, 255, np.uint8), np.zeros(3, np.uint8)])
    assert encode_brush_rle(values) == brush.encode_rle(values)
    np.testing.assert_array_equal(decode_brush_rle(encode_brush_rle(values)), values)


def test_padding_byte_when_the_stream_ends_on_a_byte_boundary() -> None:
    # header 53 bits + one 27-bit record = 80 bits: the SDK still appends a zero byte
    values = np.full(300, 7, np.uint8)
    encoded = encode_brush_rle(values)
    assert len(encoded) == 11 and encoded[-1] == 0
    assert encoded == brush.encode_rle(values)


def test_fragmented_mask_matches_sdk_mask2rle_and_round_trips() -> None:
    rng = np.random.default_rng(1)
    mask = _fragmented_mask(rng, 240, 320)
    encoded = mask_to_brush_rle(mask)
    assert encoded == brush.mask2rle(mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(brush_rle_to_mask(encoded, 240, 320), mask)
    sdk_alpha = brush.decode_rle(encoded).reshape(240, 320, 4)[:, :, 3]
    np.testing.assert_array_equal(sdk_alpha > 0, mask)


def test_random_masks_round_trip_including_full_and_empty() -> None:
    rng = np.random.default_rng(2)
    masks = [rng.random((h, w)) < p for h, w, p in [(1, 1, 0.5), (7, 13, 0.5), (50, 40, 0.9)]]
    masks += [np.zeros((30, 20), bool), np.ones((300, 300), bool)]  # one run > 65536 values
    for mask in masks:
        encoded = mask_to_brush_rle(mask)
        assert encoded == brush.mask2rle(mask.astype(np.uint8) * 255)
        np.testing.assert_array_equal(brush_rle_to_mask(encoded, *mask.shape), mask)


def test_decodes_editor_streams_with_literal_runs_like_the_sdk() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        stream, values = _random_stream(rng)
        np.testing.assert_array_equal(brush.decode_rle(stream), values)
        np.testing.assert_array_equal(decode_brush_rle(stream), values)
        np.testing.assert_array_equal(decode_brush_rle(bytes(stream)), values)


def test_mask_reads_the_alpha_channel() -> None:
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 1] = (10, 20, 30, 255)
    rgba[1, 2, 3] = 1
    rgba[1, 0, :3] = 200  # colour without alpha is not painted
    mask = brush_rle_to_mask(encode_brush_rle(rgba.ravel()), 2, 3)
    np.testing.assert_array_equal(mask, [[False, True, False], [False, False, True]])


def test_mask_from_runs_not_aligned_to_pixels_matches_the_sdk() -> None:
    """Runs of 2+ values starting anywhere in a pixel (no literal records): the alpha
    channel read straight from the runs equals the SDK's full decode."""
    rng = np.random.default_rng(11)
    for _ in range(20):
        height, width = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        total = height * width * 4
        values = np.zeros(total, np.uint8)
        pos = 0
        while pos < total:
            n = min(int(rng.integers(2, 11)), total - pos)
            values[pos : pos + n] = rng.choice([0, 7, 255])
            pos += n
        stream = encode_brush_rle(values)
        sdk = brush.decode_rle(stream).reshape(height, width, 4)[:, :, 3] > 0
        np.testing.assert_array_equal(brush_rle_to_mask(stream, height, width), sdk)


def test_any_cut_of_a_stream_is_a_truncation_error() -> None:
    stream = mask_to_brush_rle(_fragmented_mask(np.random.default_rng(5), 40, 60))
    for cut in np.random.default_rng(6).integers(8, len(stream) - 1, size=25):
        with pytest.raises(ValueError, match="truncated"):
            decode_brush_rle(stream[: int(cut)])


def test_bad_input_is_a_clear_value_error() -> None:
    good = mask_to_brush_rle(np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="truncated"):
        decode_brush_rle(good[:8])
    with pytest.raises(ValueError, match="header"):
        decode_brush_rle([1, 2, 3])
    with pytest.raises(ValueError, match="byte values"):
        decode_brush_rle([0, 300, 1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="needs 100"):
        brush_rle_to_mask(good, 5, 5)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        encode_brush_rle(np.array([1, 256]))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        encode_brush_rle(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        mask_to_brush_rle(np.zeros(5, bool))
    overrun = _BitWriter()
    overrun.put(3, 32)
    overrun.put(7, 5)
    for size in (3, 4, 8, 16):
        overrun.put(size - 1, 4)
    for value, n_bits in ((1, 1), (0, 2), (4, 3), (9, 8)):  # one repeat record of 5 values
        overrun.put(value, n_bits)
    with pytest.raises(ValueError, match="past its declared length"):
        decode_brush_rle(overrun.to_bytes())
