"""``python -m engine.prelabel``: run (or resume) one pre-label job in this process.

Exit status 0 when the job succeeded, 1 when it failed, 130 when interrupted
(SIGINT or SIGTERM, which mark the job ``cancelled``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine.prelabel", description=__doc__)
    parser.add_argument("--config", type=Path, help="settings YAML (else LABELENGINE_* env)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--job-id", help="run or resume this job")
    group.add_argument("--model", help="create a new job for this model, then run it")
    parser.add_argument("--segmenter", help="with --model: chain this segmenter (boxes -> masks)")
    parser.add_argument("--limit", type=int, help="with --model: at most N items")
    parser.add_argument("--job-config", type=Path, help="with --model: job config YAML")
    return parser


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    from engine.config import ConfigError, load_settings
    from engine.prelabel.job import create_prelabel_job, run_prelabel_job
    from engine.store import Store

    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        settings = load_settings(args.config)
        store = Store(settings.resolved_database_url)
        job_id = (
            args.job_id
            or create_prelabel_job(
                store,
                settings,
                model_name=args.model,
                segmenter_name=args.segmenter,
                limit=args.limit,
                job_config_path=args.job_config,
            ).job_id
        )
        job = run_prelabel_job(store, settings, job_id)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    summary = {
        k: getattr(job, k)
        for k in ("job_id", "state", "total", "done", "failed", "skipped", "message")
    }
    print(json.dumps(summary))
    return 0 if job.state == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
