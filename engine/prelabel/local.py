"""The in-process executor: a job's stages run in this process, no Ray.

Starting a fresh Ray node costs seconds, plus each model actor's process,
imports and model load; for a small backlog that is most of the job. Here the
same stages the Ray pipeline runs (``stages.decode_stage``, ``stages.Predictor``)
run in the calling process: one thread decodes the next batch while the model
predicts the current one (decoding releases the GIL in Pillow and numpy, the
model in torch), and every predicted batch is handed to ``write`` as it
finishes. Same job record, resume, per-item errors and progress: only the
executor differs (``engine.prelabel.job`` picks it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from engine.config import Settings
from engine.prelabel.codec import Batch, objects
from engine.prelabel.config import PrelabelConfig
from engine.prelabel.plan import ModelPlan
from engine.prelabel.stages import Predictor, decode_stage, predictor_kwargs


def run_in_process(
    todo: list[dict[str, Any]],
    settings: Settings,
    config: PrelabelConfig,
    plan: ModelPlan,
    write: Callable[[Batch], None],
) -> None:
    """Decode and predict ``todo`` (rows of ``plan.plan_items``) batch by batch here."""
    if not todo:
        return
    decode = decode_stage(plan.kind, settings, config)
    # torch's own thread count: this process owns the machine's cores for the job.
    predictor = Predictor(**predictor_kwargs(settings, config, plan, torch_threads=None))
    batches = _batches(todo, config.model_batch_size(plan.spec))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        pending: Future[Batch] | None = pool.submit(decode, next(batches))
        while pending is not None:
            decoded = pending.result()
            upcoming = next(batches, None)
            pending = None if upcoming is None else pool.submit(decode, upcoming)
            write(predictor(decoded))


def _batches(todo: list[dict[str, Any]], size: int) -> Iterator[Batch]:
    """``todo`` as column batches of ``size`` rows, shaped as Ray Data hands them over."""
    columns = list(todo[0])
    for start in range(0, len(todo), size):
        rows = todo[start : start + size]
        yield {name: objects([row[name] for row in rows]) for name in columns}
