"""Cold pre-label, as a user runs it: ``labelengine prelabel`` vs a naive ultralytics script.

Every run is a fresh process, timed end to end (interpreter start, imports, model
load, all images, and for the job the SQLite writes): the naive script
(``YOLO(weights).predict(path)`` per image, as in ``prelabel_throughput.py``) and
the ``labelengine prelabel --model yolo11n`` command with each executor
(``local``: the stages in the command's process; ``ray``: a fresh embedded Ray
node), on the sample photos (``labelengine samples``, 7) and on ``--images``
generated photos. Ingest is done before timing, into a fresh data dir per run.
The three sides alternate for ``--rounds`` rounds; the table gives medians and
the load average before and after.

    .venv/bin/python benchmarks/prelabel_cold.py [--images 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from prelabel_throughput import CONF, IMGSZ, IOU, MAX_DET, NAIVE_SCRIPT, make_photos

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "engine.cli"]
TARGET = 1.3  # the cold job vs the naive script, end to end


def _env(data_dir: Path, roots: Path, config_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LABELENGINE_DATA_DIR=str(data_dir),
        LABELENGINE_DATA_ROOTS=f'["{roots}"]',
        LABELENGINE_CONFIG_DIR=str(config_dir),
    )
    return env


def _config_dir(base: Path, executor: str) -> Path:
    """A copy of configs/ whose job config picks ``executor``."""
    folder = base / f"configs-{executor}"
    (folder / "jobs").mkdir(parents=True, exist_ok=True)
    if not (folder / "models").exists():
        (folder / "models").symlink_to(ROOT / "configs" / "models")
    (folder / "jobs" / "prelabel.yaml").write_text(f"executor: {executor}\n", encoding="utf-8")
    return folder


def time_job(base: Path, photos: Path, executor: str, run: int) -> float:
    data_dir = base / f"data-{photos.name}-{executor}-{run}"
    env = _env(data_dir, base, _config_dir(base, executor))
    subprocess.run([*CLI, "ingest", str(photos)], env=env, check=True, capture_output=True)
    start = time.perf_counter()
    done = subprocess.run(
        [*CLI, "prelabel", "--model", "yolo11n"], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or "succeeded" not in done.stdout:
        raise SystemExit(f"prelabel ({executor}) failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def time_naive(weights: Path, photos: Path, listing: Path) -> float:
    listing.write_text("\n".join(str(p) for p in sorted(photos.iterdir())), encoding="utf-8")
    args = [str(weights), str(listing), str(CONF), str(IOU), str(MAX_DET), str(IMGSZ)]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", NAIVE_SCRIPT, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from engine import assets
    from engine.cli.samples import write_samples
    from engine.config import get_model_spec, load_settings

    settings = load_settings()
    weights = assets.resolve(settings.resolved_models_dir, get_model_spec(settings, "yolo11n"))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        samples, generated = base / "samples", base / "generated"
        write_samples(samples)
        generated.mkdir()
        make_photos(generated, args.images, np.random.default_rng(args.seed))
        rows = []
        for photos in (samples, generated):
            times: dict[str, list[float]] = {"naive": [], "local": [], "ray": []}
            for run in range(args.rounds):
                times["naive"].append(time_naive(weights, photos, base / "listing.txt"))
                for executor in ("local", "ray"):
                    times[executor].append(time_job(base, photos, executor, run))
            n = len(list(photos.iterdir()))
            rows.append(
                (f"{photos.name} ({n})", {k: float(np.median(v)) for k, v in times.items()})
            )
    load_after = os.getloadavg()
    print(
        f"Cold pre-label, fresh processes end to end, median of {args.rounds} interleaved "
        f"rounds, {os.cpu_count()} CPUs; load average before {load_before[0]:.2f}, "
        f"after {load_after[0]:.2f}\n"
    )
    print("| photos | naive script s | job, local s | job, ray s | local vs naive | ray vs naive |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, med in rows:
        print(
            f"| {name} | {med['naive']:.1f} | {med['local']:.1f} | {med['ray']:.1f} "
            f"| **{med['naive'] / med['local']:.2f}x** | {med['naive'] / med['ray']:.2f}x |"
        )
    big = rows[-1][1]
    ratio = big["naive"] / big["local"]
    verdict = "met" if ratio >= TARGET else f"not met ({ratio:.2f}x)"
    print(f"\nTarget: the cold {args.images}-photo job >= {TARGET}x the naive script: {verdict}")


if __name__ == "__main__":
    main()
