"""The Ray Data plan of an embed job: items -> decode (CPU tasks) -> encode (actor pool).

Decode reuses the pre-label job's ``decode_batch`` (a bad file becomes that
row's ``error``); each ``Encoder`` actor holds one segmenter and runs its
batched encoder (``SamSegmenter.embed_many``) on every batch it gets, writing
each embedding straight into the shared disk directory. Only ``item_id`` and
``error`` travel back to the driver, never the tensors.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.config import DEFAULT_EMBEDDING_DIR_MAX_BYTES, ConfigError, ModelSpec, Settings
from engine.prelabel.codec import Batch
from engine.prelabel.runner import describe_error
from engine.prelabel.runtime import RaySession
from engine.prelabel.stages import decode_batch

if TYPE_CHECKING:
    from ray.data import Dataset

    from engine.prelabel.config import EmbedConfig

log = logging.getLogger(__name__)


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def decode_keyed(batch: Batch, **decode_options: Any) -> Batch:
    """``decode_batch`` that keeps the ``key`` column (the embedding's file name)."""
    decoded = decode_batch(batch, **decode_options)
    decoded["key"] = batch["key"]
    return decoded


class Encoder:
    """One segmenter per actor; encodes column batches into the disk directory."""

    def __init__(
        self,
        spec: dict[str, Any],
        models_dir: str,
        disk_dir: str,
        *,
        device: str = "auto",
        precision: str = "auto",
        torch_threads: int | None = None,
        disk_max_bytes: int | None = DEFAULT_EMBEDDING_DIR_MAX_BYTES,
    ) -> None:
        from engine.segment.embeddings import build_segmenter

        # Idle intra-op threads sleep instead of spinning (see engine.prelabel.stages).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        self.model = build_segmenter(
            ModelSpec.model_validate(spec),
            Path(models_dir),
            Path(disk_dir),
            device=device,
            precision=precision,
            memory_bytes=0,
            disk_max_bytes=disk_max_bytes,
        )

    def __call__(self, batch: Batch) -> Batch:
        ids = [str(i) for i in batch["item_id"]]
        errors = [str(e) for e in batch["error"]]
        ok = [k for k, error in enumerate(errors) if not error]
        outcomes = self._encode([batch["image"][k] for k in ok], [str(batch["key"][k]) for k in ok])
        for k, outcome in zip(ok, outcomes, strict=True):
            errors[k] = outcome
        return {"item_id": _objects(ids), "error": _objects(errors)}

    def _encode(self, images: list[np.ndarray], keys: list[str]) -> list[str]:
        """``""`` per encoded image, else the error; a failed batch is retried image by image."""
        if not images:
            return []
        try:
            self.model.embed_many(images, keys)
            return [""] * len(images)
        except Exception as exc:  # retried below, one image at a time
            if len(images) == 1:
                return [describe_error(exc)]
        outcomes = []
        for image, key in zip(images, keys, strict=True):
            try:
                self.model.embed_many([image], [key])
                outcomes.append("")
            except Exception as exc:  # this image only
                outcomes.append(describe_error(exc))
        return outcomes


def uses_gpus(config: EmbedConfig, session: RaySession) -> bool:
    return session.gpus >= 1 and config.device != "cpu"


def check_resources(config: EmbedConfig, session: RaySession) -> None:
    """Refuse a sizing that leaves no CPU for decoding (it would wait forever)."""
    left = session.cpus - config.actor_num_cpus * config.num_actors
    if left >= config.decode_num_cpus:
        return
    message = (
        f"embed job config: {config.num_actors} encoder actor(s) x actor_num_cpus="
        f"{config.actor_num_cpus} leave {left:g} of {session.cpus:g} CPUs, less than one "
        f"decode task (decode_num_cpus={config.decode_num_cpus})"
    )
    if session.embedded:
        raise ConfigError(message)
    log.warning("%s (continuing: the cluster may scale up)", message)


def build_embed_dataset(
    todo: list[dict[str, str]],
    settings: Settings,
    config: EmbedConfig,
    spec: ModelSpec,
    disk_dir: Path,
    session: RaySession,
) -> Dataset:
    """The lazy dataset of ``{item_id, error}`` rows for ``todo`` (``item_id, uri, key``)."""
    import pyarrow as pa
    import ray.data

    from engine.segment.embeddings import embedding_dir_budget

    check_resources(config, session)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.raise_original_map_exception = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    table = pa.table({name: [row[name] for row in todo] for name in ("item_id", "uri", "key")})
    items = ray.data.from_arrow(table).repartition(target_num_rows_per_block=config.rows_per_block)
    decoded = items.map_batches(
        partial(
            decode_keyed,
            roots=[str(r) for r in settings.resolved_data_roots],
            max_pixels=settings.max_image_pixels,
            max_file_bytes=config.max_file_bytes,
        ),
        batch_size=config.decode_batch_size,
        batch_format="numpy",
        num_cpus=config.decode_num_cpus,
        # Reserving memory bounds the decode tasks in flight; the differing resources
        # also keep Ray Data from fusing decode into the encoder actors.
        memory=config.decode_memory_bytes,
    )
    gpus = uses_gpus(config, session)
    threads = config.torch_threads
    if threads is None and not gpus:
        threads = max(1, int(session.cpus // config.num_actors))
    return decoded.map_batches(
        Encoder,
        batch_size=config.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=config.num_actors),
        num_cpus=config.actor_num_cpus,
        num_gpus=1 if gpus else None,
        fn_constructor_kwargs={
            "spec": spec.model_dump(mode="json"),
            "models_dir": str(settings.resolved_models_dir),
            "disk_dir": str(disk_dir),
            "device": config.device,
            "precision": config.precision,
            "torch_threads": threads,
            "disk_max_bytes": embedding_dir_budget(settings),
        },
    )
