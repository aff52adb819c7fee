"""Where embeddings live on disk and how an item is keyed there.

The embed job writes and every server reads one directory, laid out like
``EmbeddingCache``'s disk tier: ``<dir>/<model_version>/<image_key>.npz``.
The directory is, first match wins:

1. ``settings.embedding_cache_dir`` (``LABELENGINE_EMBEDDING_CACHE_DIR``),
2. the model spec's ``params.cache_dir``,
3. ``<data_dir>/embeddings``.

An item's ``image_key`` is ``image_key(content sha256 recorded at ingest)``,
or of its ``item_id`` when it was ingested without one; the model version is
``model_version(spec)``. A job and a server reading the same spec therefore
name every file the same way, and the server never re-encodes what a job wrote.

The directory is bounded by ``settings.embedding_dir_max_bytes`` (all model
versions together; ``None``: unbounded): every writer (server or job actor)
deletes the least recently used files once it goes over (see
``engine.models.sam.disk_tier``). A job covering more images than the bound holds
warns once (``warn_if_over_budget``): its first embeddings are evicted by its
last ones.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import DEFAULT_EMBEDDING_DIR_MAX_BYTES, ModelSpec, Settings
from engine.models.sam.embedding_cache import image_key

if TYPE_CHECKING:
    from engine.models.sam.segmenter import SamSegmenter

log = logging.getLogger(__name__)

EMBEDDINGS_DIR_NAME = "embeddings"


def embedding_dir(settings: Settings, spec: ModelSpec | None = None) -> Path:
    """The shared embedding directory (absolute); see the module doc for the order."""
    configured = settings.embedding_cache_dir
    if configured is None and spec is not None and spec.params.get("cache_dir"):
        configured = Path(str(spec.params["cache_dir"]))
    if configured is None:
        configured = settings.data_dir / EMBEDDINGS_DIR_NAME
    return configured.expanduser().resolve()


def item_image_key(item_id: str, content_sha256: str | None) -> str:
    """The cache key of an item's image: its content hash, else its id (made file-safe)."""
    return image_key(content_sha256 or item_id)


def embedding_file(disk_dir: Path, key: str, model_version: str) -> Path:
    """The file ``EmbeddingCache(disk_dir=disk_dir)`` uses for ``(key, model_version)``."""
    return disk_dir / model_version / f"{image_key(key)}.npz"


def embedding_dir_budget(settings: Settings) -> int | None:
    """The shared directory's bound in bytes (``None``: unbounded)."""
    return settings.embedding_dir_max_bytes


def warn_if_over_budget(
    budget_bytes: int | None, file_bytes: int, items: int, disk_dir: Path
) -> bool:
    """Log (and return True) when ``items`` embeddings of ``file_bytes`` each do not
    fit in ``budget_bytes``: the older ones will be evicted by the newer ones."""
    if budget_bytes is None or file_bytes <= 0:
        return False
    capacity = budget_bytes // file_bytes
    if items <= capacity:
        return False
    log.warning(
        "the embedding dir budget holds %d embeddings (embedding_dir_max_bytes=%d, "
        "%d bytes each); the job encodes %d; older ones are evicted (%s)",
        capacity,
        budget_bytes,
        file_bytes,
        items,
        disk_dir,
    )
    return True


def build_segmenter(
    spec: ModelSpec,
    models_dir: Path,
    disk_dir: Path,
    *,
    device: str = "auto",
    precision: str = "auto",
    memory_bytes: int | None = None,
    disk_max_bytes: int | None = DEFAULT_EMBEDDING_DIR_MAX_BYTES,
) -> SamSegmenter:
    """``SamSegmenter.from_spec`` with its cache's disk tier at ``disk_dir``.

    The model version stays ``model_version(spec)`` (the spec is not changed).
    ``memory_bytes`` replaces the spec's ``cache_max_bytes`` (0: keep nothing in
    memory, as a pre-encode worker wants). ``disk_max_bytes`` bounds the
    directory (pass ``embedding_dir_budget(settings)``; ``None``: unbounded).
    """
    from engine.models.sam.embedding_cache import EmbeddingCache
    from engine.models.sam.segmenter import SamSegmenter

    if spec.family != "sam":
        raise ValueError(f"model {spec.name!r} is a {spec.family} model, not a segmenter")
    model = SamSegmenter.from_spec(spec, models_dir, device, precision)
    old = model.cache
    model.cache = EmbeddingCache(
        old.max_bytes if memory_bytes is None else memory_bytes,
        store_dtype=old.store_dtype,
        disk_dir=disk_dir,
        disk_max_bytes=disk_max_bytes,
        device=old.device,
    )
    return model
