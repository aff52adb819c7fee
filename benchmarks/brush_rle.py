"""Benchmark: Label Studio brush RLE of fragmented 1920x1080 masks, ours vs the SDK.

Run: ``.venv/bin/python benchmarks/brush_rle.py`` (needs the dev dependency
``label-studio-sdk``). Prints a markdown table for docs/benchmarks.md.

Masks (seeded): ``blobs`` is the union of 3000 random disks of radius 2-12 px
(a cell or "segment everything" mask); ``blocks-4px`` is a random 4x4-pixel
checkerboard (a noisy probability map thresholded). Encode: ours
``mask_to_brush_rle(mask)`` against the SDK's ``mask2rle(mask_u8 * 255)``,
checked byte-identical. Decode: ours ``brush_rle_to_mask`` against the SDK's
``decode_rle`` plus the alpha-channel reshape, checked identical. Each of
``--rounds`` rounds times ours (best of ``--repeats``) and then the SDK (once),
so load hits both alike; the table reports the median per-round ratio and its
range, not the best.
"""

from __future__ import annotations

import argparse
import os
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


def _rounds(ours: Callable[[], Any], sdk: Callable[[], Any], args: argparse.Namespace) -> Any:
    """Interleaved rounds: ours best of ``repeats``, the SDK once; per-round times."""
    ours_ms, sdk_ms = [], []
    result = None
    for _ in range(args.rounds):
        t, result = _best_of(ours, args.repeats)
        ours_ms.append(t * 1e3)
        t, _ = _best_of(sdk, 1)
        sdk_ms.append(t * 1e3)
    return np.array(ours_ms), np.array(sdk_ms), result


def _cells(ours_ms: np.ndarray, sdk_ms: np.ndarray) -> str:
    ratios = sdk_ms / ours_ms
    return (
        f"{np.median(sdk_ms):,.0f} | {np.median(ours_ms):.1f} | **{np.median(ratios):,.0f}x** "
        f"({ratios.min():,.0f}-{ratios.max():,.0f})"
    )


def _row(name: str, mask: np.ndarray, args: argparse.Namespace) -> tuple[str, float, float]:
    from label_studio_sdk.converter import brush

    from engine.labelstudio.brush_rle import brush_rle_to_mask, mask_to_brush_rle

    n_runs = int(np.count_nonzero(mask.ravel()[1:] != mask.ravel()[:-1])) + 1
    sdk = brush.mask2rle(mask.astype(np.uint8) * 255)
    enc_ours, enc_sdk, ours = _rounds(
        lambda: mask_to_brush_rle(mask), lambda: brush.mask2rle(mask.astype(np.uint8) * 255), args
    )
    if ours != sdk:
        raise SystemExit(f"{name}: our encoding differs from the SDK's")
    dec_ours, dec_sdk, decoded = _rounds(
        lambda: brush_rle_to_mask(sdk, HEIGHT_PX, WIDTH_PX),
        lambda: brush.decode_rle(sdk).reshape(HEIGHT_PX, WIDTH_PX, 4)[:, :, 3] > 0,
        args,
    )
    if not np.array_equal(decoded, mask):
        raise SystemExit(f"{name}: decoded masks differ")
    row = (
        f"| {name} | {n_runs:,} | {len(ours):,} | {_cells(enc_ours, enc_sdk)} "
        f"| {_cells(dec_ours, dec_sdk)} |"
    )
    return row, float(np.median(enc_sdk / enc_ours)), float(np.median(dec_sdk / dec_ours))


def main() -> None:
    args = _parse()
    rng = np.random.default_rng(args.seed)
    masks = {"blobs": _blobs(rng), "blocks-4px": _blocks(rng)}
    print(
        f"Brush RLE, {WIDTH_PX}x{HEIGHT_PX} masks, {args.rounds} interleaved rounds (ours best "
        f"of {args.repeats} per round, the SDK once); medians, ratio range in brackets; "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
    )
    print(
        "| mask | runs | RLE bytes | SDK encode ms | ours encode ms | encode speedup "
        "| SDK decode ms | ours decode ms | decode speedup |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios = {}
    for name, mask in masks.items():
        row, encode, decode = _row(name, mask, args)
        ratios[name] = (encode, decode)
        print(row)
    encode, decode = ratios["blocks-4px"]
    print(
        f"\nTargets on the fragmented mask (blocks-4px): encode >= 100x: "
        f"{'met' if encode >= 100 else f'not met ({encode:.0f}x)'}; decode >= 20x: "
        f"{'met' if decode >= 20 else f'not met ({decode:.0f}x)'}"
    )


if __name__ == "__main__":
    main()
