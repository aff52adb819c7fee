"""Click-to-segment over HTTP: the real server on loopback vs the in-process decoder call.

Starts the real app (``create_app`` under uvicorn, in a thread of this
process, on 127.0.0.1) with the LiteMedSAM segmenter (``--model litemedsam``,
real weights from the models cache) or a tiny random one (``--model tiny``),
ingests the coffee photo, then:

- first click: ``POST /interactive/segment`` on images never seen (encode +
  decode + HTTP), ``--first-clicks`` times on shifted copies of the photo;
- per click: ``--clicks`` random box prompts, each sent over HTTP (keep-alive
  ``httpx`` client, the server-side decode time read from ``decode_ms``) and
  given to ``SamSegmenter.segment`` in-process on the same embedding,
  alternating so background load hits both alike.

The HTTP overhead factor is HTTP p50 / in-process p50; the route does more
than the decoder (item and detector-box lookups, RLE + polygon of the mask,
JSON). Prints one markdown table and the load average before and after.

    .venv/bin/python benchmarks/http_click_latency.py --threads 1
    .venv/bin/python benchmarks/http_click_latency.py --model tiny --clicks 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

TOKEN = "bench-token"


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("litemedsam", "tiny"), default="litemedsam")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clicks", type=int, default=60)
    parser.add_argument("--first-clicks", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _boxes(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    size = rng.uniform(0.15, 0.6, (n, 2)) * [width, height]
    x1 = rng.uniform(0, width - size[:, 0])
    y1 = rng.uniform(0, height - size[:, 1])
    return np.stack([x1, y1, x1 + size[:, 0], y1 + size[:, 1]], axis=1).round()


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _write_photos(folder: Path, count: int) -> list[Path]:
    from PIL import Image
    from skimage import data

    image = data.coffee()
    paths = []
    for k in range(count):  # distinct pixels: each is a first click
        path = folder / f"coffee{k}.png"
        Image.fromarray(np.ascontiguousarray(np.roll(image, 7 * k, axis=1))).save(path)
        paths.append(path)
    return paths


def _segmenter(args: argparse.Namespace, settings: Any) -> Any:
    from engine.models.sam.segmenter import SamSegmenter
    from engine.segment.service import InteractiveSegmenter

    if args.model == "tiny":
        tiny = SamSegmenter("litemedsam", tiny=True, device=args.device, seed=args.seed)
        return InteractiveSegmenter(settings, build=lambda: tiny)
    return InteractiveSegmenter(settings)  # interactive_model from configs, real weights


def _serve(app: Any, port: int) -> tuple[Any, threading.Thread]:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    return server, thread


def main() -> None:
    import httpx
    import torch

    from engine.config import load_settings
    from engine.ingest import ingest
    from engine.serving.app import create_app
    from engine.store import Store

    args = _args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_before = _load()
    work = Path(tempfile.mkdtemp(prefix="http-click-"))
    photos = work / "photos"
    photos.mkdir()
    paths = _write_photos(photos, args.first_clicks + 1)
    port = _free_port()
    settings = load_settings(
        data_dir=work / "data",
        data_roots=[work],
        api_token=TOKEN,
        interactive_model="litemedsam",
        port=port,
    )
    store = Store(settings.resolved_database_url)
    ingest(store, str(photos), [work])
    ids = {Path(str(i.uri)).name: i.item_id for i in store.list_items(limit=1000)}
    item_ids = [ids[p.name] for p in paths]
    segmenter = _segmenter(args, settings)
    segmenter.model  # noqa: B018 - load the weights before timing anything
    server, thread = _serve(create_app(settings, store, segmenter), port)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}
    )

    def post(item_id: str, box: np.ndarray) -> tuple[float, dict[str, Any]]:
        start = time.perf_counter()
        response = client.post(
            "/interactive/segment", json={"item_id": item_id, "box_xyxy": box.tolist()}
        )
        elapsed = (time.perf_counter() - start) * 1000.0
        response.raise_for_status()
        return elapsed, response.json()

    rng = np.random.default_rng(args.seed)
    from skimage import data

    height, width = data.coffee().shape[:2]
    boxes = _boxes(rng, args.clicks + args.first_clicks + 5, height, width)
    first_http, first_encode = [], []
    for k, item_id in enumerate(item_ids[1:]):
        elapsed, out = post(item_id, boxes[k])
        assert out["encode_ms"] is not None, "a first click must encode"
        first_http.append(elapsed)
        first_encode.append(out["encode_ms"])

    main_id = item_ids[0]
    post(main_id, boxes[0])  # encodes the benchmark image
    model = segmenter.model
    from engine.segment.embeddings import item_image_key

    key = item_image_key(main_id, store.content_sha256(main_id))
    embedding = model.cache.get((key, model.version))
    for box in boxes[:5]:  # warm-up both paths
        post(main_id, box)
        model.segment(embedding, box_xyxy=box)
    http_ms, server_decode_ms, local_ms = [], [], []
    for r, box in enumerate(boxes[5 : 5 + args.clicks]):
        for which in (0, 1) if r % 2 == 0 else (1, 0):
            if which == 0:
                elapsed, out = post(main_id, box)
                assert out["encode_ms"] is None
                http_ms.append(elapsed)
                server_decode_ms.append(out["decode_ms"])
            else:
                start = time.perf_counter()
                model.segment(embedding, box_xyxy=box)
                local_ms.append((time.perf_counter() - start) * 1000.0)
    client.close()
    server.should_exit = True
    thread.join(10)
    store.close()
    shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("per click p50 (ms)", _p(http_ms, 50), _p(local_ms, 50)),
        ("per click p99 (ms)", _p(http_ms, 99), _p(local_ms, 99)),
    ]
    weights = "real" if args.model == "litemedsam" else "tiny random"
    print(
        f"\nHTTP click latency: model={args.model} ({weights}) device={model.device} "
        f"image={width}x{height} clicks={args.clicks} threads={torch.get_num_threads()} "
        f"cpus={os.cpu_count()} load average before: {load_before}, after: {_load()}\n"
    )
    print("| metric | HTTP round trip | in-process `segment` | HTTP overhead factor |")
    print("|---|---:|---:|---:|")
    for name, http_v, local_v in rows:
        print(f"| {name} | {http_v:.2f} | {local_v:.2f} | {http_v / local_v:.2f}x |")
    print(
        f"| server-side `decode_ms` p50 (ms) | {_p(server_decode_ms, 50):.2f} | | |\n"
        f"| first click over HTTP p50 (ms), encode + decode | {_p(first_http, 50):.1f} "
        f"| (encode_ms p50 {_p(first_encode, 50):.1f}) | |"
    )


if __name__ == "__main__":
    main()
