"""decode_image / image_size on every kind of image Pillow can write, plus broken input."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.imaging.decode import (
    ImageDecodeError,
    check_rgb_image,
    decode_image,
    image_size,
    read_local_image,
    sha256_hex,
)


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _random_rgb(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _png_with_header_size(width_px: int, height_px: int) -> bytes:
    """A tiny real PNG whose IHDR claims ``width_px x height_px`` (CRC fixed up)."""
    data = bytearray(_encode(Image.new("RGB", (4, 4), (1, 2, 3)), "PNG"))
    ihdr_start = 8 + 4  # signature, then chunk length; chunk type 'IHDR' follows
    assert data[ihdr_start : ihdr_start + 4] == b"IHDR"
    struct.pack_into(">II", data, ihdr_start + 4, width_px, height_px)
    body = bytes(data[ihdr_start : ihdr_start + 4 + 13])
    struct.pack_into(">I", data, ihdr_start + 4 + 13, zlib.crc32(body))
    return bytes(data)


def test_rgb_png_round_trips_exactly() -> None:
    pixels = _random_rgb(np.random.default_rng(0), 17, 29)
    decoded = decode_image(_encode(Image.fromarray(pixels), "PNG"))
    assert decoded.dtype == np.uint8 and decoded.flags.c_contiguous
    assert not decoded.flags.writeable  # documented: read-only, no defensive copy
    np.testing.assert_array_equal(decoded, pixels)


def test_exif_orientation_6_rotates_clockwise() -> None:
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # stored landscape: left red, right blue
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.fromarray(stored), "JPEG", exif=exif, quality=95)

    decoded = decode_image(data)

    assert decoded.shape == (40, 20, 3)  # displayed portrait
    assert image_size(data) == (20, 40)
    top, bottom = decoded[:15].mean(axis=(0, 1)), decoded[25:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60  # rotating clockwise brings the left (red) to the top
    assert bottom[2] > 200 and bottom[0] < 60


def test_cmyk_jpeg_becomes_rgb() -> None:
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    decoded = decode_image(_encode(cyan, "JPEG", quality=95))
    assert decoded.shape == (16, 16, 3)
    np.testing.assert_allclose(decoded.mean(axis=(0, 1)), (0, 255, 255), atol=3)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 300).round().astype(np.uint16)
    grey16 = np.tile(ramp, (5, 1))
    data = _encode(Image.fromarray(grey16), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")

    decoded = decode_image(data)

    expected = np.rint(grey16.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
    assert decoded.shape == (5, 300, 3)
    np.testing.assert_array_equal(decoded[:, :, 0], expected)
    np.testing.assert_array_equal(decoded[:, :, 0], decoded[:, :, 2])
    assert decoded.min() == 0 and decoded.max() == 255
    assert len(np.unique(decoded)) > 250  # a clip would collapse the top of the ramp


def test_thirty_two_bit_signed_image_is_stretched() -> None:
    values = np.linspace(-5000, 70000, 64).astype(np.int32).reshape(8, 8)
    decoded = decode_image(_encode(Image.fromarray(values, mode="I"), "TIFF"))
    assert decoded[0, 0, 0] == 0 and decoded[-1, -1, 0] == 255
    assert np.all(np.diff(decoded[:, :, 0].ravel().astype(int)) >= 0)


def test_float_image_is_stretched() -> None:
    values = np.linspace(-1.0, 3.0, 100, dtype=np.float32).reshape(10, 10)
    decoded = decode_image(_encode(Image.fromarray(values, mode="F"), "TIFF"))
    assert decoded[0, 0, 1] == 0 and decoded[-1, -1, 1] == 255


def test_rgba_is_composited_over_white() -> None:
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[0, :, 3] = 0  # transparent row
    rgba[1, :, 3] = 255  # opaque row
    rgba[1, 2, 3] = 128  # one half-transparent pixel
    decoded = decode_image(_encode(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    np.testing.assert_array_equal(decoded[0], np.full((3, 3), 255))
    np.testing.assert_array_equal(decoded[1, 0], (10, 20, 30))
    np.testing.assert_allclose(decoded[1, 2], (132.5, 137.5, 142.5), atol=1.5)


def test_grey_and_grey_alpha() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    decoded = decode_image(_encode(Image.fromarray(grey, mode="L"), "PNG"))
    np.testing.assert_array_equal(decoded, np.repeat(grey[:, :, None], 3, axis=2))
    assert not decoded.flags.writeable

    grey_alpha = np.stack([grey, np.zeros_like(grey)], axis=2)
    decoded_la = decode_image(_encode(Image.fromarray(grey_alpha, mode="LA"), "PNG"))
    assert (decoded_la == 255).all()


def test_palette_with_and_without_transparency() -> None:
    palette_image = Image.new("P", (6, 4), 1)
    palette_image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette_image.putpixel((0, 0), 0)
    opaque = decode_image(_encode(palette_image, "PNG"))
    np.testing.assert_array_equal(opaque[0, 0], (0, 0, 0))
    np.testing.assert_array_equal(opaque[3, 5], (200, 100, 50))

    transparent = decode_image(_encode(palette_image, "PNG", transparency=0))
    np.testing.assert_array_equal(transparent[0, 0], (255, 255, 255))
    np.testing.assert_array_equal(transparent[3, 5], (200, 100, 50))


def test_bilevel_and_multi_frame_gif() -> None:
    first = Image.new("P", (5, 5), 0)
    first.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    second = first.copy()
    second.paste(1, (0, 0, 5, 5))
    data = _encode(first, "GIF", save_all=True, append_images=[second])
    decoded = decode_image(data)
    np.testing.assert_array_equal(decoded[2, 2], (255, 0, 0))  # the first frame

    bilevel = decode_image(_encode(Image.new("1", (8, 3), 1), "PNG"))
    assert bilevel.shape == (3, 8, 3) and (bilevel == 255).all()


def test_small_limit_refuses_before_decoding() -> None:
    data = _encode(Image.fromarray(_random_rgb(np.random.default_rng(1), 100, 100)), "PNG")
    with pytest.raises(ImageDecodeError, match=r"10000 pixels.*limit of 5000") as info:
        decode_image(data, max_pixels=5000, source="s3://bucket/a.png")
    assert "s3://bucket/a.png" in str(info.value)
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_header_bomb_is_refused_without_touching_pillow_limit() -> None:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    # 120 Mpx: above our default limit, below Pillow's hard error, so our check must act.
    data = _png_with_header_size(12_000, 10_000)
    assert image_size(data) == (12_000, 10_000)
    started = time.perf_counter()
    with pytest.raises(ImageDecodeError, match=r"120000000 pixels.*limit of 100000000"):
        decode_image(data, source="bomb.png")
    assert time.perf_counter() - started < 0.5  # refused from the header, nothing allocated

    huge = _png_with_header_size(50_000, 50_000)
    with pytest.raises(ImageDecodeError, match=r"2500000000 pixels") as info:
        decode_image(huge, source="huge.png")
    assert "huge.png" in str(info.value)
    assert pillow_limit == Image.MAX_IMAGE_PIXELS


def test_truncated_jpeg_is_a_clear_error() -> None:
    data = _encode(Image.fromarray(_random_rgb(np.random.default_rng(2), 64, 64)), "JPEG")
    with pytest.raises(ImageDecodeError, match=r"'cut\.jpg'.*JPEG.*truncated"):
        decode_image(data[: len(data) // 2], source="cut.jpg")


def test_truncated_png_is_a_clear_error() -> None:
    data = _encode(Image.fromarray(_random_rgb(np.random.default_rng(3), 64, 64)), "PNG")
    with pytest.raises(ImageDecodeError, match=r"cut\.png"):
        decode_image(data[: len(data) // 2], source="cut.png")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty data"),
        (b"hello, this is plain text and not an image", "not a recognised image format"),
        (b"\x89PNG\r\n\x1a\n", "x.bin"),  # a signature and nothing else
    ],
)
def test_not_an_image(data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message) as info:
        decode_image(data, source="x.bin")
    assert "x.bin" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ImageDecodeError):
        image_size(data)


def test_rejects_non_bytes_and_bad_limit() -> None:
    with pytest.raises(ImageDecodeError, match="expected image bytes, got str"):
        decode_image("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pixels must be positive"):
        decode_image(b"abc", max_pixels=0)


def test_sha256_hex_matches_the_standard_vector() -> None:
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_hex(b"abc") == digest
    assert sha256_hex(bytearray(b"abc")) == digest


def test_read_local_image_takes_paths_and_file_uris(tmp_path: Path) -> None:
    pixels = _random_rgb(np.random.default_rng(4), 9, 7)
    path = tmp_path / "with space.png"
    path.write_bytes(_encode(Image.fromarray(pixels), "PNG"))
    np.testing.assert_array_equal(read_local_image(str(path)), pixels)
    np.testing.assert_array_equal(read_local_image(path.as_uri()), pixels)
    with pytest.raises(ImageDecodeError, match="cannot read file"):
        read_local_image(str(tmp_path / "missing.png"))
    with pytest.raises(ValueError, match="only local paths"):
        read_local_image("https://example.com/a.png")
    with pytest.raises(ImageDecodeError, match="limit of 10"):
        read_local_image(str(path), max_pixels=10)


def test_check_rgb_image() -> None:
    good = np.zeros((2, 3, 3), dtype=np.uint8)
    assert check_rgb_image(good) is good
    with pytest.raises(ValueError, match="'cam-1': expected an HxWx3 RGB image"):
        check_rgb_image(np.zeros((2, 3, 4), dtype=np.uint8), source="cam-1")
    with pytest.raises(ValueError, match="expected a uint8 numpy image, got float64"):
        check_rgb_image(np.zeros((2, 3, 3)))


def test_garbage_is_a_clean_error_even_after_ultralytics_patched_pillow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YOLO_OFFLINE", "1")  # importing ultralytics otherwise probes DNS
    import ultralytics.utils.patches  # noqa: F401  (replaces PIL.Image.open on import)

    assert Image.open.__module__ != "PIL.Image"
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        decode_image(b"definitely not an image", source="junk.bin")
    pixels = _random_rgb(np.random.default_rng(5), 4, 4)
    np.testing.assert_array_equal(decode_image(_encode(Image.fromarray(pixels), "PNG")), pixels)
