"""Benchmark: Label Studio brush RLE of fragmented 1920x1080 masks, ours vs the SDK.

Run: ``.venv/bin/python benchmarks/brush_rle.py`` (needs the dev dependency
``label-studio-sdk``). Prints a markdown table for docs/benchmarks.md.

Masks (seeded): ``blobs`` is the union of 3000 random disks of radius 2-12 px
(a cell or "segment everything" mask); ``blocks-4px`` is a random 4x4-pixel
checkerboard (a noisy probability map thresholded). Encode: ours
``mask_to_brush_rle(mask)`` against the SDK's ``mask2rle(mask_u8 * 255)``,
checked byte-identical. Decode: ours ``brush_rle_to_mask`` against the SDK's
``decode_rle`` plus the alpha-channel reshape, checked identical. Encoding alternates
between the two for ``--rounds`` rounds and keeps each one's best time, so a
busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

HEIGHT_PX, WIDTH_PX = 1080, 1920


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved SDK/ours rounds")
    parser.add_argument("--repeats", type=int, default=10, help="our runs per round")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _blobs(rng: np.random.Generator, n: int = 3000) -> np.ndarray:
    yy, xx = np.mgrid[-12:13, -12:13]
    mask = np.zeros((HEIGHT_PX + 24, WIDTH_PX + 24), dtype=bool)
    for cy, cx, r in zip(
        rng.integers(0, HEIGHT_PX, n),
        rng.integers(0, WIDTH_PX, n),
        rng.integers(2, 13, n),
        strict=True,
    ):
        mask[cy : cy + 25, cx : cx + 25] |= yy**2 + xx**2 <= r**2
    return mask[12:-12, 12:-12].copy()


def _blocks(rng: np.random.Generator, block_px: int = 4) -> np.ndarray:
    coarse = rng.random((HEIGHT_PX // block_px, WIDTH_PX // block_px)) < 0.5
    return np.kron(coarse, np.ones((block_px, block_px), dtype=bool))


def _row(name: str, mask: np.ndarray, args: argparse.Namespace) -> str:
    from label_studio_sdk.converter import brush

    from engine.labelstudio.brush_rle import brush_rle_to_mask, mask_to_brush_rle

    n_runs = int(np.count_nonzero(mask.ravel()[1:] != mask.ravel()[:-1])) + 1
    ours_s = sdk_s = float("inf")
    ours: list[int] = []
    sdk: list[int] = []
    for _ in range(args.rounds):  # interleaved, so both see the same machine load
        t, ours = _best_of(lambda: mask_to_brush_rle(mask), args.repeats)
        ours_s = min(ours_s, t)
        t, sdk = _best_of(lambda: brush.mask2rle(mask.astype(np.uint8) * 255), 1)
        sdk_s = min(sdk_s, t)
    if ours != sdk:
        raise SystemExit(f"{name}: our encoding differs from the SDK's")
    dec_s, decoded = _best_of(lambda: brush_rle_to_mask(sdk, HEIGHT_PX, WIDTH_PX), args.repeats)
    sdk_dec_s, sdk_decoded = _best_of(
        lambda: brush.decode_rle(sdk).reshape(HEIGHT_PX, WIDTH_PX, 4)[:, :, 3] > 0, 1
    )
    if not (np.array_equal(decoded, mask) and np.array_equal(sdk_decoded, mask)):
        raise SystemExit(f"{name}: decoded masks differ")
    return (
        f"| {name} | {n_runs:,} | {len(ours):,} | {sdk_s * 1e3:,.0f} | {ours_s * 1e3:.1f} "
        f"| **{sdk_s / ours_s:,.0f}x** | {sdk_dec_s * 1e3:,.0f} | {dec_s * 1e3:.1f} "
        f"| **{sdk_dec_s / dec_s:,.0f}x** |"
    )


def main() -> None:
    args = _parse()
    rng = np.random.default_rng(args.seed)
    masks = {"blobs": _blobs(rng), "blocks-4px": _blocks(rng)}
    print(
        f"Brush RLE, {WIDTH_PX}x{HEIGHT_PX} masks: encode best of {args.rounds} interleaved "
        f"rounds ({args.repeats} runs of ours, 1 of the SDK's each); decode best of "
        f"{args.repeats} (ours) and 1 (SDK)\n"
    )
    print(
        "| mask | runs | RLE bytes | SDK encode ms | ours encode ms | encode speedup "
        "| SDK decode ms | ours decode ms | decode speedup |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, mask in masks.items():
        print(_row(name, mask, args))


if __name__ == "__main__":
    main()
