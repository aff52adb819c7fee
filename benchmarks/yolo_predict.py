"""YoloDetector.predict versus ultralytics' own predictor, and decode_image versus plain Pillow.

Same real YOLO11n weights, same images (ultralytics' bus.jpg / zidane.jpg,
randomly cropped and resized, so sizes are mixed), same settings (conf 0.01,
IoU 0.7, max 300 boxes, 640 px), same device:

- ours: ``YoloDetector.predict(items, arrays)``, one call per batch;
- theirs: ``YOLO(weights).predict(list_of_bgr_arrays, ...)``, one call per batch.

Decode: ``decode_image(bytes)`` (EXIF, modes, bomb check) versus
``np.asarray(Image.open(BytesIO(bytes)).convert("RGB"))``.

    python benchmarks/yolo_predict.py [--images 32] [--batch 8] [--repeats 3]

Prints a markdown table; ratio = theirs / ours time (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _asset(name: str) -> Path:
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        raise SystemExit("ultralytics is not installed")
    return Path(spec.origin).parent / "assets" / name


def _photos(n: int, rng: np.random.Generator) -> list[bytes]:
    from PIL import Image

    sources = [Image.open(_asset(name)).convert("RGB") for name in ("bus.jpg", "zidane.jpg")]
    photos = []
    for i in range(n):
        image = sources[i % 2]
        w, h = image.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = image.crop((x, y, x + cw, y + ch))
        scale = rng.uniform(0.5, 1.0)
        crop = crop.resize((max(int(cw * scale), 32), max(int(ch * scale), 32)))
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


def _best_ms(run: Callable[[], Any], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times) * 1000.0


def _batched(
    predict: Callable[..., Any], items: list[Any], arrays: list[np.ndarray], size: int
) -> Callable[[], None]:
    def run() -> None:
        for start in range(0, len(items), size):
            predict(items[start : start + size], arrays[start : start + size])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    import torch
    from PIL import Image

    from engine.imaging.decode import decode_image
    from engine.models.yolo import YoloDetector
    from engine.types import Item

    models_dir = Path(os.environ.get("LABELENGINE_MODELS_DIR", "~/.cache/labelengine/models"))
    weights = models_dir.expanduser() / "yolo11n" / "yolo11n.pt"
    photos = _photos(args.images, np.random.default_rng(0))

    decode_ours = _best_ms(lambda: [decode_image(p) for p in photos], args.repeats)
    decode_pil = _best_ms(
        lambda: [np.asarray(Image.open(io.BytesIO(p)).convert("RGB")) for p in photos],
        args.repeats,
    )

    arrays = [decode_image(p) for p in photos]
    bgr = [np.ascontiguousarray(a[:, :, ::-1]) for a in arrays]
    items = [Item(item_id=str(i), kind="image", uri=f"{i}.jpg") for i in range(len(arrays))]
    rows = []
    for mode in ("rect", "square"):
        ours = YoloDetector(weights, device=args.device, letterbox_mode=mode)
        run = _batched(ours.predict, items, arrays, args.batch)
        rows.append((f"YoloDetector.predict ({mode}, {ours.device})", _best_ms(run, args.repeats)))
    from ultralytics import YOLO

    threads = torch.get_num_threads()
    theirs = YOLO(str(weights))
    device = ours.device

    fp16 = {"half": True} if device.startswith("cuda") else {}

    def theirs_predict(_: Any, images: list[np.ndarray]) -> None:
        theirs.predict(images, conf=0.01, iou=0.7, max_det=300, device=device, **fp16)
        torch.set_num_threads(threads)  # its first call resets threads to cpu_count - 1

    theirs_ms = _best_ms(_batched(theirs_predict, items, bgr, args.batch), args.repeats)

    n = len(photos)
    print(f"\n{n} mixed-size images, batch {args.batch}, best of {args.repeats}\n")
    print("| step | ms / image | ratio (alternative / ours) |")
    print("|---|---:|---:|")
    print(f"| decode_image | {decode_ours / n:.2f} | {decode_pil / decode_ours:.2f} |")
    print(f"| Pillow open+convert (alternative) | {decode_pil / n:.2f} | |")
    for label, ms in rows:
        print(f"| {label} | {ms / n:.2f} | {theirs_ms / ms:.2f} |")
    print(f"| ultralytics YOLO.predict (alternative) | {theirs_ms / n:.2f} | |")


if __name__ == "__main__":
    main()
