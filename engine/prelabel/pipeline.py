"""The Ray Data plan of a pre-label job: items -> decode (CPU tasks) -> predict (actor pool).

Decode reads images (``engine.prelabel.stages.decode_batch``) or texts
(``engine.prelabel.text.decode_text_batch``) by the job's item kind.

Nothing runs until the driver iterates the returned dataset; Ray Data then
streams blocks through both stages at once, so decoding, transfer and model
compute overlap, with backpressure bounded by the object store.

Resource rules (checked before anything starts, so a bad sizing fails with a
message instead of hanging): the model actors must leave at least one decode
task's worth of CPU free, and with GPUs each actor takes one whole GPU.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.config import ConfigError, ModelSpec, Settings
from engine.prelabel.config import PrelabelConfig
from engine.prelabel.plan import ModelPlan
from engine.prelabel.runtime import RaySession
from engine.prelabel.stages import Batch, Predictor, decode_batch
from engine.prelabel.text import decode_text_batch

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset

log = logging.getLogger(__name__)

BLOCKS_PER_TABLE = 256


def uses_gpus(config: PrelabelConfig, session: RaySession) -> bool:
    return session.gpus >= 1 and config.device != "cpu"


def torch_threads(config: PrelabelConfig, session: RaySession) -> int | None:
    """Intra-op threads per CPU actor: the config's, else the cluster's CPUs split
    over the actors. ``None`` (leave Ray's default) for GPU actors."""
    if config.torch_threads is not None:
        return config.torch_threads
    if uses_gpus(config, session):
        return None
    return max(1, int(session.cpus // config.num_model_actors))


def check_resources(config: PrelabelConfig, session: RaySession) -> None:
    """Refuse sizings that would leave an operator waiting forever for resources."""
    problems = []
    actor_cpus = config.actor_num_cpus * config.num_model_actors
    if session.cpus - actor_cpus < config.decode_num_cpus:
        problems.append(
            f"{config.num_model_actors} model actor(s) x actor_num_cpus={config.actor_num_cpus} "
            f"leave {session.cpus - actor_cpus:g} of {session.cpus:g} CPUs, less than one "
            f"decode task (decode_num_cpus={config.decode_num_cpus}); lower actor_num_cpus "
            "or num_model_actors"
        )
    if uses_gpus(config, session) and config.num_model_actors > session.gpus:
        problems.append(
            f"num_model_actors={config.num_model_actors} but the cluster has "
            f"{session.gpus:g} GPU(s); each actor takes one"
        )
    if not problems:
        return
    message = "; ".join(problems)
    if session.embedded:
        raise ConfigError(f"prelabel job config: {message}")
    log.warning("%s (continuing: the cluster may scale up)", message)


def build_dataset(
    todo: list[dict[str, Any]],
    settings: Settings,
    config: PrelabelConfig,
    models: ModelPlan | ModelSpec,
    session: RaySession,
) -> Dataset:
    """The lazy dataset of predict-stage rows for ``todo`` (rows of ``plan_items``).

    ``models``: the job's ``ModelPlan`` (a bare ``ModelSpec`` means that model
    alone, on the item kind of its family).
    """
    import ray.data

    plan = models if isinstance(models, ModelPlan) else ModelPlan.for_spec(models)
    check_resources(config, session)
    _quiet_data_context()
    gpus = uses_gpus(config, session)
    batch_size = config.model_batch_size(plan.spec)
    # Blocks of exactly `rows` items (the last shorter): the unit that is scheduled,
    # streamed back and written, so a crash loses at most the blocks in flight.
    rows = block_rows(config.rows_per_block, batch_size)
    items = ray.data.from_arrow(input_tables(todo, rows)).repartition(
        target_num_rows_per_block=rows
    )
    # Decode tasks reserve RAM (`memory`), so the scheduler never runs more of them
    # than the node can hold. The differing resources also keep Ray Data from fusing
    # decode into the model actors, which would serialise the two stages.
    decoded = items.map_batches(
        decode_stage(plan.kind, settings, config),
        batch_size=config.decode_batch_size,
        batch_format="numpy",
        num_cpus=config.decode_num_cpus,
        compute=ray.data.TaskPoolStrategy(size=config.decode_concurrency),
        memory=config.decode_memory_bytes,
    )
    return decoded.map_batches(
        Predictor,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=config.num_model_actors),
        num_cpus=config.actor_num_cpus,
        num_gpus=1 if gpus else None,
        fn_constructor_kwargs={
            "spec": plan.spec.model_dump(mode="json"),
            "models_dir": str(settings.resolved_models_dir),
            "device": config.device,
            "precision": config.precision,
            "torch_threads": torch_threads(config, session),
            "kind": plan.kind,
            "segmenter_spec": None
            if plan.segmenter is None
            else plan.segmenter.model_dump(mode="json"),
            "mask_min_box_score": plan.mask_min_box_score,
            "mask_multimask": plan.mask_multimask,
            "expected_version": plan.job_version,
        },
    )


def decode_stage(kind: str, settings: Settings, config: PrelabelConfig) -> Callable[[Batch], Batch]:
    """The decode function for ``kind`` items, bound to the job's limits."""
    roots = [str(r) for r in settings.resolved_data_roots]
    if kind == "text":
        return functools.partial(
            decode_text_batch,
            roots=roots,
            max_text_chars=config.max_text_chars,
            max_file_bytes=config.max_file_bytes,
        )
    return functools.partial(
        decode_batch,
        roots=roots,
        max_pixels=config.resolved_max_pixels(settings),
        max_file_bytes=config.max_file_bytes,
    )


def block_rows(rows_per_block: int, batch_size: int) -> int:
    """Rows per block: ``rows_per_block`` rounded up to a whole number of model batches."""
    return math.ceil(rows_per_block / batch_size) * batch_size


def input_tables(todo: list[dict[str, Any]], rows: int) -> list[pa.Table]:
    """``todo`` as a few large Arrow tables, each a whole number of ``rows``-row blocks.

    Putting one small table per block into the object store costs milliseconds
    each (minutes for a million items); a few large tables, split by a
    streaming repartition on the workers, cost nothing up front.
    """
    import pyarrow as pa

    step = rows * BLOCKS_PER_TABLE
    columns = list(todo[0]) if todo else []
    return [
        pa.table({name: [row[name] for row in todo[start : start + step]] for name in columns})
        for start in range(0, len(todo), step)
    ]


def _quiet_data_context() -> None:
    """No progress bars or start banners; a UDF error surfaces as itself."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.raise_original_map_exception = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)
