"""Pre-label throughput: the Ray Data job versus a naive ultralytics loop.

Both run the real YOLO11n weights (``engine.assets.resolve``) over the same
photos (skimage.data + ultralytics' bus.jpg / zidane.jpg, randomly cropped,
flipped and resized into a temp folder), with the same thresholds
(conf 0.01, IoU 0.7, max 300 boxes, 640 px):

- naive: ``YOLO(weights).predict(path)`` per image, one process, default threads;
- job: ``run_prelabel_job`` (decode tasks -> model actor pool -> SQLite writes),
  on an embedded Ray cluster that is started once before timing (as in a
  server or on a cluster) and also timed cold, Ray start-up included. Each
  job run still pays its actors' start-up (worker process, torch and
  ultralytics imports, model load); "steady state" is the rate from the first
  written block to the end, which is what an hours-long backlog sees.

Sizings: ``auto`` is the shipped default (the job sizes its actors from the
cluster, ``engine.prelabel.pipeline.actor_sizing``); ``AxT`` is A actors with
T torch threads each (``1x2`` is the default before sizing was automatic).
The naive loop runs first and last; the faster of the two is the baseline.

    python benchmarks/prelabel_throughput.py [--images 200] [--configs auto 1x2] [--batch 8]

Prints a markdown table and the ratio job / naive.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

CONF, IOU, MAX_DET, IMGSZ = 0.01, 0.7, 300, 640
RAY_WORKER_NICENESS = 15  # Ray's default for worker processes (``RAY_worker_niceness``)


class Run(NamedTuple):
    """One timed job with Ray already running."""

    label: str  # the sizing, as run
    wall_s: float  # end to end
    steady: float  # images/s from the first write to the end
    first_write_s: float  # start-up: job start to the first written block


def make_photos(folder: Path, n: int, rng: np.random.Generator) -> list[Path]:
    """``n`` JPEGs: random crops (60-100 % per side), flips and resizes (50-100 %)."""
    from PIL import Image
    from skimage import data

    from engine.cli.samples import ultralytics_asset

    sources = [
        np.asarray(Image.open(ultralytics_asset(n)).convert("RGB"))
        for n in ("bus.jpg", "zidane.jpg")
    ]
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "cat"):
        sources.append(getattr(data, name)())
    paths = []
    for i in range(n):
        image = sources[i % len(sources)]
        h, w = image.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = image[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        scale = rng.uniform(0.5, 1.0)
        out = Image.fromarray(np.ascontiguousarray(crop)).resize(
            (max(int(cw * scale), 32), max(int(ch * scale), 32)), Image.Resampling.BILINEAR
        )
        path = folder / f"photo_{i:04d}.jpg"
        out.save(path, quality=90)
        paths.append(path)
    return paths


NAIVE_SCRIPT = """
import os, sys, time
os.environ.setdefault("YOLO_OFFLINE", "1")
from ultralytics import YOLO
weights, listing, conf, iou, max_det, imgsz = sys.argv[1:7]
model = YOLO(weights)
start = time.perf_counter()
for path in open(listing).read().split():
    model.predict(path, conf=float(conf), iou=float(iou), max_det=int(max_det),
                  imgsz=int(imgsz), verbose=False)
print(time.perf_counter() - start)
"""


def naive_script(
    weights: Path, paths: list[Path], listing: Path, niceness: int
) -> tuple[float, float]:
    """``(whole script s, loop only s)``: a fresh Python process that imports
    ultralytics, loads the model and calls ``predict(path)`` per image, as a
    user would write it. The job pays the same imports in its actors.

    It runs at ``niceness``: Ray starts its workers (the job's decode tasks and
    model actors) at nice 15, so on a machine shared with other busy processes
    a nice-0 baseline would get several times the job's CPU share.
    """
    listing.write_text("\n".join(str(p) for p in paths), encoding="utf-8")
    args = [str(weights), str(listing), str(CONF), str(IOU), str(MAX_DET), str(IMGSZ)]
    nice = ["nice", "-n", str(niceness)] if niceness else []
    start = time.perf_counter()
    done = subprocess.run(
        [*nice, sys.executable, "-c", NAIVE_SCRIPT, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    whole = time.perf_counter() - start
    return whole, float(done.stdout.strip().splitlines()[-1])


def run_job(root: Path, tag: str, job_overrides: dict[str, object]) -> tuple[float, float, float]:
    """``(seconds, steady-state images/s, seconds to the first write)`` for one job."""
    from engine.config import load_settings
    from engine.ingest import ingest
    from engine.prelabel.config import PrelabelConfig
    from engine.prelabel.job import create_prelabel_job, run_prelabel_job
    from engine.store import JobRecord, Store

    settings = load_settings(data_dir=root / tag, data_roots=[root])
    store = Store(settings.resolved_database_url)
    ingest(store, str(root / "photos"), settings.resolved_data_roots)
    config_path = root / f"{tag}.yaml"
    config_path.write_text("".join(f"{k}: {v}\n" for k, v in job_overrides.items()), "utf-8")
    PrelabelConfig.model_validate(job_overrides)
    job = create_prelabel_job(store, settings, model_name="yolo11n", job_config_path=config_path)
    first: list[float] = []

    def on_progress(record: JobRecord) -> None:
        if record.done and not first:
            first.append(time.perf_counter())
            first.append(record.done)

    start = time.perf_counter()
    final = run_prelabel_job(store, settings, job.job_id, on_progress=on_progress)
    elapsed = time.perf_counter() - start
    if final.state != "succeeded":
        raise RuntimeError(f"job {tag} ended {final.state}: {final.message}")
    steady = (final.done - first[1]) / (start + elapsed - first[0]) if first else 0.0
    store.close()
    return elapsed, steady, (first[0] - start) if first else elapsed


def _job_config(spec: str, batch: int) -> dict[str, object]:
    """``auto`` -> the job sizes itself; ``AxT`` -> A model actors with T torch threads
    each, sharing all but one CPU."""
    if spec == "auto":
        return {"batch_size": batch, "write_batch_size": 32, "executor": "ray"}
    actors, threads = (int(part) for part in spec.split("x"))
    cpus = os.cpu_count() or 1
    return {
        "num_model_actors": actors,
        "actor_num_cpus": round(min(1.0, max(cpus - 1, 1) / actors), 3),
        "torch_threads": threads,
        "batch_size": batch,
        "write_batch_size": 32,
        "executor": "ray",  # this benchmark measures the Ray pipeline (prelabel_cold.py: both)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["auto", "1x2"],
        help="job sizings: auto, or ACTORSxTHREADS (torch threads per actor)",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--naive-niceness",
        type=int,
        default=int(os.environ.get("RAY_worker_niceness", RAY_WORKER_NICENESS)),  # noqa: SIM112 (Ray spells it so)
        help="nice value of the naive script (default: that of Ray's workers)",
    )
    args = parser.parse_args()

    from engine import assets
    from engine.config import get_model_spec, load_settings
    from engine.prelabel.config import PrelabelConfig
    from engine.prelabel.pipeline import actor_sizing
    from engine.prelabel.runtime import ray_session

    settings = load_settings()
    weights = assets.resolve(settings.resolved_models_dir, get_model_spec(settings, "yolo11n"))
    jobs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="prelabel-bench-") as tmp:
        root = Path(tmp)
        (root / "photos").mkdir()
        paths = make_photos(root / "photos", args.images, np.random.default_rng(0))
        n = len(paths)
        print(f"{n} photos, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
        naive = [naive_script(weights, paths, root / "list.txt", args.naive_niceness)]
        print(f"  naive script: {naive[0][0]:.1f} s (loop {naive[0][1]:.1f} s)", flush=True)
        cold_s, _, _ = run_job(root, "cold", _job_config(args.configs[0], args.batch))
        print(f"  job {args.configs[0]}, cold: {cold_s:.1f} s", flush=True)
        with ray_session(load_settings(data_dir=root / "ray", data_roots=[root])) as session:
            _start_ray_data()
            for spec in args.configs:
                overrides = _job_config(spec, args.batch)
                sizing = actor_sizing(PrelabelConfig.model_validate(overrides), session)
                label = f"{spec}: {sizing.num_actors} actor(s) x {sizing.torch_threads} thread(s)"
                warm_s, steady, first_s = run_job(root, f"warm{spec}", overrides)
                print(f"  job {label}, Ray running: {warm_s:.1f} s", flush=True)
                jobs.append(Run(label, warm_s, steady, first_s))
        naive.append(naive_script(weights, paths, root / "list.txt", args.naive_niceness))
        print(f"  naive script again: {naive[1][0]:.1f} s (loop {naive[1][1]:.1f} s)", flush=True)
    _report(n, args, naive, jobs, cold_s)


def _start_ray_data() -> None:
    """Run a trivial dataset once, as any earlier job on a running cluster has: Ray
    Data's own actors (stats, autoscaling requests, actor locations) start on a
    cluster's first dataset and then stay; the first timed job should not pay that."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    ray.data.range(8).map_batches(lambda batch: batch).materialize()


def _report(
    n: int,
    args: argparse.Namespace,
    naive: list[tuple[float, float]],
    jobs: list[Run],
    cold_s: float,
) -> None:
    # The faster of the two naive runs is the baseline: on a shared machine this
    # errs against the job. End-to-end rows compare with the whole naive script,
    # steady-state rows with its loop alone (model already loaded).
    script_s = min(whole for whole, _ in naive)
    loop_s = min(loop for _, loop in naive)
    print(
        f"\n{n} images, yolo11n @ {IMGSZ} px, conf {CONF}, CPU, {os.cpu_count()} cores, "
        f"batch {args.batch}, naive at nice {args.naive_niceness}, "
        f"load average at end {os.getloadavg()[0]:.1f}\n"
    )
    print("| method | wall s | images/s | vs naive |")
    print("|---|---:|---:|---:|")
    print(
        f"| naive script: imports + load + `predict(path)` loop | {script_s:.1f} "
        f"| {n / script_s:.2f} | 1.00x |"
    )
    print(f"| naive loop alone (model loaded) | {loop_s:.1f} | {n / loop_s:.2f} | 1.00x |")
    for run in jobs:
        print(
            f"| job {run.label}, end to end (Ray running; first write after "
            f"{run.first_write_s:.1f} s) | {run.wall_s:.1f} | {n / run.wall_s:.2f} "
            f"| {script_s / run.wall_s:.2f}x |"
        )
        print(
            f"| job {run.label}, steady state (first write to end) | - | {run.steady:.2f} "
            f"| {run.steady * loop_s / n:.2f}x |"
        )
    print(
        f"| job {args.configs[0]}, cold: `ray.init` included | {cold_s:.1f} "
        f"| {n / cold_s:.2f} | {script_s / cold_s:.2f}x |"
    )
    first = jobs[0]
    print(f"\nratio end to end ({first.label} / naive script): {script_s / first.wall_s:.2f}x")
    print(f"ratio steady state ({first.label} / naive loop): {first.steady * loop_s / n:.2f}x")


if __name__ == "__main__":
    main()
