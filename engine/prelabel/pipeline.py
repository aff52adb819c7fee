"""The Ray Data plan of a pre-label job: items -> decode (CPU tasks) -> predict (actor pool).

Decode reads images (``engine.prelabel.stages.decode_batch``) or texts
(``engine.prelabel.text.decode_text_batch``) by the job's item kind.

Nothing runs until the driver iterates the returned dataset; Ray Data then
streams blocks through both stages at once, so decoding, transfer and model
compute overlap, with backpressure bounded by the object store.

The model actor pool is sized from the cluster unless the job config says
otherwise (``actor_sizing``: one actor per GPU; CPU only, several narrow
actors filling the cores), and never starts more actors than there are
blocks. Resource rules (checked before anything starts, so a bad sizing
fails with a message instead of hanging): the model actors must leave at
least one decode task's worth of CPU free, and with GPUs each actor takes one
whole GPU.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.config import ConfigError, ModelSpec, Settings
from engine.prelabel.config import PrelabelConfig
from engine.prelabel.plan import ModelPlan
from engine.prelabel.runtime import RaySession
from engine.prelabel.stages import Predictor, decode_stage, predictor_kwargs

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset

log = logging.getLogger(__name__)

BLOCKS_PER_TABLE = 256
MIN_BLOCKS_PER_ACTOR = 8
# Auto sizing of CPU-only model actors (see ``actor_sizing``).
AUTO_TWO_THREADS_FROM_CPUS = 4
AUTO_FOUR_THREADS_FROM_CPUS = 16
AUTO_DECODE_CPU_FRACTION = 0.25


def uses_gpus(config: PrelabelConfig, session: RaySession) -> bool:
    return session.gpus >= 1 and config.device != "cpu"


@dataclass(frozen=True)
class ActorSizing:
    """The model actor pool of one job, resolved against its cluster."""

    num_actors: int
    num_cpus: float  # Ray CPUs reserved per actor
    num_gpus: int  # whole GPUs per actor: 1 on a GPU cluster, else 0
    torch_threads: int | None  # intra-op threads per actor; None: torch's default (GPU actors)
    auto: tuple[str, ...]  # the config keys that were sized here (left unset in the config)

    def describe(self) -> str:
        threads = "default" if self.torch_threads is None else self.torch_threads
        gpus = f" x {self.num_gpus} GPU" if self.num_gpus else ""
        auto = f" (auto: {', '.join(self.auto)})" if self.auto else ""
        return (
            f"{self.num_actors} model actor(s) x {self.num_cpus:g} CPU{gpus}, "
            f"torch_threads {threads}{auto}"
        )


def auto_threads_per_actor(cpus: int) -> int:
    """Intra-op threads per CPU actor when the config leaves the actor count to the job.

    1 below 4 CPUs, 2 below 16, else 4: several narrow actors beat one wide
    one (each actor's letterbox, NMS and batch conversion are single-threaded,
    and intra-op scaling of a small conv net flattens past a few threads).
    Measured on 2 cores only (docs/benchmarks.md, pre-label job): 2 actors x 1
    thread ran 1.36-1.46x the naive ultralytics loop in steady state, 1 x 2
    1.29x. The 2 and 4 threads on bigger machines are an assumption.
    """
    if cpus < AUTO_TWO_THREADS_FROM_CPUS:
        return 1
    return 2 if cpus < AUTO_FOUR_THREADS_FROM_CPUS else 4


def auto_decode_cpus(config: PrelabelConfig, cpus: float) -> float:
    """Ray CPUs the auto sizing leaves to decode tasks: one task's worth, at least a
    quarter of the cluster. Small photos decode in ~7 ms, but a 12 MP JPEG took
    ~170 ms on the 2-core dev VM, more than yolo11n spends on it per thread."""
    return max(config.decode_num_cpus, math.floor(cpus * AUTO_DECODE_CPU_FRACTION))


def actor_sizing(config: PrelabelConfig, session: RaySession) -> ActorSizing:
    """The job's actor pool: the config's values where given, else sized from ``session``.

    - GPUs (and ``device`` not ``cpu``): one actor per whole GPU, 1 CPU each
      (less when the cluster is short of CPUs), torch's default threads.
    - CPU only, ``C`` CPUs: ``t = auto_threads_per_actor(C)`` threads (or the
      config's), ``C // t`` actors; explicit actors get ``C // actors`` threads
      (the rule from before sizing was automatic, so stored jobs run as
      recorded). Threads fill every core: idle intra-op threads sleep
      (``OMP_WAIT_POLICY=PASSIVE``), so decode tasks get a core when they
      need one.
    - The actors' Ray CPU reservations leave ``auto_decode_cpus`` free, so
      decode tasks are scheduled beside them.
    """
    gpus = uses_gpus(config, session)
    cpus = max(1, math.floor(session.cpus))
    auto = tuple(
        key
        for key in ("num_model_actors", "actor_num_cpus", "torch_threads")
        if getattr(config, key) is None
    )
    actors = config.num_model_actors
    if actors is None and gpus:
        actors = max(1, math.floor(session.gpus))
    elif actors is None:
        actors = max(1, cpus // (config.torch_threads or auto_threads_per_actor(cpus)))
    threads = config.torch_threads
    if threads is None and not gpus:
        threads = max(1, cpus // actors)
    num_cpus = config.actor_num_cpus
    if num_cpus is None:
        free = session.cpus - auto_decode_cpus(config, session.cpus)
        cap = 1.0 if gpus else float(threads or 1)
        # rounded down, so the actors never take a sliver of decode's share
        num_cpus = math.floor(min(cap, free / actors) * 1000) / 1000 if free > 0 else cap
    return ActorSizing(actors, num_cpus, 1 if gpus else 0, threads, auto)


def torch_threads(config: PrelabelConfig, session: RaySession) -> int | None:
    """Intra-op threads per model actor (see ``actor_sizing``)."""
    return actor_sizing(config, session).torch_threads


def check_resources(config: PrelabelConfig, session: RaySession) -> None:
    """Refuse sizings that would leave an operator waiting forever for resources."""
    sizing = actor_sizing(config, session)
    problems = []
    left = session.cpus - sizing.num_cpus * sizing.num_actors
    if left < config.decode_num_cpus:
        problems.append(
            f"{sizing.num_actors} model actor(s) x actor_num_cpus={sizing.num_cpus:g} "
            f"leave {left:g} of {session.cpus:g} CPUs, less than one "
            f"decode task (decode_num_cpus={config.decode_num_cpus:g}); lower actor_num_cpus, "
            "num_model_actors or decode_num_cpus"
        )
    if sizing.num_gpus and sizing.num_actors > session.gpus:
        problems.append(
            f"num_model_actors={sizing.num_actors} but the cluster has "
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
    sizing = actor_sizing(config, session)
    _quiet_data_context()
    batch_size = config.model_batch_size(plan.spec)
    # Blocks of exactly `rows` items (the last shorter): the unit that is scheduled,
    # streamed back and written, so a crash loses at most the blocks in flight.
    rows = block_rows(
        config.rows_per_block, batch_size, num_items=len(todo), num_actors=sizing.num_actors
    )
    pool_size = actor_pool_size(sizing.num_actors, len(todo), rows)
    log.info(
        "pre-label job: %d items in blocks of %d on %s%s",
        len(todo),
        rows,
        sizing.describe(),
        f"; {pool_size} started (fewer blocks than actors)"
        if pool_size < sizing.num_actors
        else "",
    )
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
        compute=ray.data.ActorPoolStrategy(size=pool_size),
        num_cpus=sizing.num_cpus,
        num_gpus=sizing.num_gpus or None,
        fn_constructor_kwargs=predictor_kwargs(settings, config, plan, sizing.torch_threads),
    )


def block_rows(
    rows_per_block: int, batch_size: int, *, num_items: int = 0, num_actors: int = 1
) -> int:
    """Rows per block: ``rows_per_block``, rounded up to a whole number of model batches.

    A job of ``num_items`` (when given) too small to give each of ``num_actors``
    ``MIN_BLOCKS_PER_ACTOR`` blocks gets smaller blocks (never under one
    batch): a block is indivisible, so with a handful of blocks one actor
    works through the last ones while the others idle (96 items in blocks of
    32 on 2 actors: one did 64, the other sat idle for a third of the job).
    """
    rows = rows_per_block
    if num_items > 0:
        rows = min(rows, math.ceil(num_items / (num_actors * MIN_BLOCKS_PER_ACTOR)))
    return math.ceil(rows / batch_size) * batch_size


def actor_pool_size(num_actors: int, num_items: int, rows: int) -> int:
    """Actors to start: no more than blocks, since an actor beyond that would pay
    its start-up (worker, imports, model load) for nothing."""
    return max(1, min(num_actors, math.ceil(num_items / rows)))


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
