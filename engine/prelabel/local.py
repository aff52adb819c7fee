"""The in-process executor: a job's stages run in this process, no Ray.

Starting a fresh Ray node costs seconds, plus each model actor's process,
imports and model load; for a small backlog that is most of the job. Here the
same stages the Ray pipeline runs (``stages.decode_stage``, ``stages.Predictor``)
run in the calling process: one thread decodes ahead, and ``workers`` model
replicas predict in threads of their own (torch releases the GIL in its
kernels). On a CPU that is one replica per core with one torch thread each,
the shape the Ray pipeline's auto sizing also picks: two single-threaded
replicas on 2 cores beat one two-threaded one, whose small convolutions spend
much of their time synchronising threads. With a GPU, one replica. Batches are
written in order, from the calling thread, as they finish. Same job record,
resume, per-item errors and progress: only the executor differs
(``engine.prelabel.job`` picks it).
"""

from __future__ import annotations

import os
import queue
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from engine.config import Settings
from engine.prelabel.codec import Batch, objects
from engine.prelabel.config import PrelabelConfig
from engine.prelabel.plan import ModelPlan
from engine.prelabel.stages import Predictor, decode_stage, predictor_kwargs

MAX_AUTO_WORKERS = 4


def local_workers(config: PrelabelConfig, n_items: int, batch_size: int) -> int:
    """Model replicas: the config's, else one per CPU (at most 4) on a CPU, one on a GPU;
    never more than there are batches."""
    if config.local_workers is not None:
        workers = config.local_workers
    elif _uses_cuda(config.device):
        workers = 1
    else:
        workers = min(os.cpu_count() or 1, MAX_AUTO_WORKERS)
    return max(1, min(workers, -(-n_items // batch_size)))


def _uses_cuda(device: str) -> bool:
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    import torch

    return bool(torch.cuda.is_available())


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
    batch_size = config.model_batch_size(plan.spec)
    workers = local_workers(config, len(todo), batch_size)
    threads = 1 if workers > 1 else config.torch_threads
    kwargs = predictor_kwargs(settings, config, plan, torch_threads=threads)
    replicas: queue.Queue[Predictor] = queue.Queue()
    for _ in range(workers):
        replicas.put(Predictor(**kwargs))
    decode = decode_stage(plan.kind, settings, config)

    def predict(decoded: Future[Batch]) -> Batch:
        replica = replicas.get()
        try:
            return replica(decoded.result())
        finally:
            replicas.put(replica)

    with (
        ThreadPoolExecutor(1, thread_name_prefix="decode") as decoder,
        ThreadPoolExecutor(workers, thread_name_prefix="predict") as predictors,
    ):
        in_flight: deque[Future[Batch]] = deque()
        for batch in _batches(todo, batch_size):
            in_flight.append(predictors.submit(predict, decoder.submit(decode, batch)))
            while len(in_flight) > workers:  # bounded: decoded images wait in memory
                write(in_flight.popleft().result())
        while in_flight:
            write(in_flight.popleft().result())


def _batches(todo: list[dict[str, Any]], size: int) -> Iterator[Batch]:
    """``todo`` as column batches of ``size`` rows, shaped as Ray Data hands them over."""
    columns = list(todo[0])
    for start in range(0, len(todo), size):
        rows = todo[start : start + size]
        yield {name: objects([row[name] for row in rows]) for name in columns}
