"""Click-to-segment latency: engine SamSegmenter vs stock segment_anything SamPredictor.

Same model object, same image, same prompts (boxes: the default LiteMedSAM is
box-trained). Stock = ``SamPredictor.set_image`` once, then ``predict`` per
click; ours = ``SamSegmenter.embed`` once, then ``segment`` per click (which
also computes the stability score). Calls alternate between the two so
background load hits both alike. Prints one markdown table.

    .venv/bin/python benchmarks/click_latency.py                      # litemedsam, CPU
    .venv/bin/python benchmarks/click_latency.py --device cuda --variant vit_h --precision bf16

Variants other than litemedsam run with random weights unless ``--checkpoint``
is given (a random model times the same as a trained one). ``--tiny`` builds a
miniature of the variant with random weights (a plumbing check, not a timing).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="litemedsam")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", help="encoder precision: fp32, bf16, fp16")
    parser.add_argument("--compile", action="store_true", help="torch.compile the image encoder")
    parser.add_argument("--tiny", action="store_true", help="miniature random model (smoke run)")
    parser.add_argument("--clicks", type=int, default=60)
    parser.add_argument("--first-clicks", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4, help="images per encoder batch")
    parser.add_argument("--boxes", type=int, default=16, help="boxes per image for segment_boxes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    return parser.parse_args()


def _default_checkpoint(variant: str) -> Path | None:
    if variant != "litemedsam":
        return None
    root = Path(os.environ.get("LABELENGINE_MODELS_DIR", "~/.cache/labelengine/models"))
    path = root.expanduser() / "litemedsam" / "lite_medsam.pth"
    return path if path.is_file() else None


def _boxes(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    size = rng.uniform(0.15, 0.6, (n, 2)) * [width, height]
    x1 = rng.uniform(0, width - size[:, 0])
    y1 = rng.uniform(0, height - size[:, 1])
    return np.stack([x1, y1, x1 + size[:, 0], y1 + size[:, 1]], axis=1).round()


def _timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - start) * 1000.0


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _each(fn: Callable[[Any], object], values: Iterable[Any]) -> None:
    for value in values:
        fn(value)


def _interleaved(
    rounds: list[list[Callable[[], object]]], sync: Callable[[], None]
) -> list[list[float]]:
    """Time each round's callables (ms), rotating their order from round to round."""
    times: list[list[float]] = [[] for _ in rounds[0]]
    for r, fns in enumerate(rounds):
        order = [(r + j) % len(fns) for j in range(len(fns))]
        for j in order:
            times[j].append(_timed(fns[j], sync))
    return times


def main() -> None:
    import torch
    from segment_anything import SamPredictor
    from skimage import data

    from engine.models.sam.embedding_cache import EmbeddingCache
    from engine.models.sam.segmenter import SamSegmenter

    args = _args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.tiny and args.checkpoint:
        raise SystemExit("--tiny builds random weights: leave out --checkpoint")
    checkpoint = None if args.tiny else args.checkpoint or _default_checkpoint(args.variant)
    seg = SamSegmenter(
        args.variant,
        checkpoint,
        tiny=args.tiny,
        device=args.device,
        precision=args.precision,
        compile_encoder=args.compile,
        batch_size=args.batch,
        seed=args.seed,
    )
    on_cuda = seg.device.startswith("cuda")

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    image = data.coffee()
    height, width = image.shape[:2]
    rng = np.random.default_rng(args.seed)
    clicks = _boxes(rng, args.clicks, height, width)
    predictor = SamPredictor(seg.sam)
    encoder_ctx = seg._autocast  # stock gets the same encoder precision

    def stock_set(im: np.ndarray) -> None:
        with encoder_ctx():
            predictor.set_image(im)

    def stock_click(b: np.ndarray) -> None:
        predictor.predict(box=b, multimask_output=False)

    stock_set(image)
    emb = seg.embed(None, image)
    for box in clicks[:5]:  # warm-up both paths
        stock_click(box)
        seg.segment(emb, box_xyxy=box)
    ours, stock = _interleaved(
        [[partial(seg.segment, emb, box_xyxy=b), partial(stock_click, b)] for b in clicks], sync
    )

    def ours_first(im: np.ndarray, b: np.ndarray) -> None:
        seg.segment(seg.embed(None, im), box_xyxy=b)

    def stock_first(im: np.ndarray, b: np.ndarray) -> None:
        stock_set(im)
        stock_click(b)

    shifted = [
        np.ascontiguousarray(np.roll(image, k + 1, axis=1)) for k in range(args.first_clicks)
    ]
    first_ours, first_stock = _interleaved(
        [
            [partial(ours_first, im, b), partial(stock_first, im, b)]
            for im, b in zip(shifted, clicks[: len(shifted)], strict=True)
        ],
        sync,
    )

    many = _boxes(rng, args.boxes, height, width)
    batched_boxes, looped_boxes = _interleaved(
        [[partial(seg.segment_boxes, emb, many), partial(_each, stock_click, many)]] * 3,
        sync,
    )

    pool = [data.coffee(), data.astronaut(), data.chelsea(), data.rocket()]
    chunk = [np.ascontiguousarray(np.roll(pool[i % 4], i, axis=0)) for i in range(args.batch)]
    seg.cache = EmbeddingCache(max_bytes=0)  # nothing kept: every image is encoded
    seg.embed_many(chunk)  # warm-up at this batch size
    enc_batched, enc_single, enc_stock = _interleaved(
        [
            [
                partial(seg.embed_many, chunk),
                partial(_each, partial(seg.embed, None), chunk),
                partial(_each, stock_set, chunk),
            ]
        ]
        * 3,
        sync,
    )
    n = len(chunk) * 1000.0
    rows = [
        ("per-click decode p50 (ms)", _p(ours, 50), _p(stock, 50)),
        ("per-click decode p99 (ms)", _p(ours, 99), _p(stock, 99)),
        ("first click, encode + decode p50 (ms)", _p(first_ours, 50), _p(first_stock, 50)),
        (
            f"{args.boxes} boxes on one image (ms): segment_boxes vs predict loop",
            _p(batched_boxes, 50),
            _p(looped_boxes, 50),
        ),
        (
            f"encoder images/s (embed_many, batch {args.batch}) vs set_image loop",
            n / _p(enc_batched, 50),
            n / _p(enc_stock, 50),
        ),
        (
            "encoder images/s (embed one by one) vs set_image loop",
            n / _p(enc_single, 50),
            n / _p(enc_stock, 50),
        ),
    ]
    print(
        f"\nSAM click latency: variant={args.variant} weights="
        f"{'real' if checkpoint else 'tiny random' if args.tiny else 'random'} "
        f"device={seg.device} precision={args.precision} "
        f"compile={args.compile} image={width}x{height} clicks={args.clicks} "
        f"threads={torch.get_num_threads()}\n"
    )
    print("| metric | engine | stock SamPredictor | speed-up |")
    print("|---|---:|---:|---:|")
    for name, ours_v, stock_v in rows:
        higher_better = "images/s" in name
        ratio = ours_v / stock_v if higher_better else stock_v / ours_v
        print(f"| {name} | {ours_v:.2f} | {stock_v:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
