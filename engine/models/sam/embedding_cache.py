"""Image-embedding cache: content-addressed, LRU bounded by bytes, thread-safe.

Keys are ``(image_key, model_version)``; ``image_key`` is a content hash of
the image (``content_hash``) or any caller-chosen stable id. Two tiers:

- memory: an LRU bounded by the bytes of the stored feature tensors. An entry
  bigger than the whole bound is not kept in memory (it still goes to disk).
- disk (optional, ``engine.models.sam.disk_tier``): one
  ``<model_version>/<image_key>.npz`` per entry, written atomically (temporary
  file + ``os.replace``), read on a memory miss. Several processes can share
  the directory; a pre-encode job's work survives restarts. ``disk_max_bytes``
  bounds the whole directory (least recently used files go first; reads and
  memory hits refresh a file's recency); ``None``: unbounded.

``get_or_compute`` computes a missing key once even when many threads ask for
it at the same time: the first caller computes, the others wait for its result.
``store_dtype="fp16"`` halves the memory and disk bytes (the segmenter decodes
in fp32 either way).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.models.sam.disk_tier import DiskTier

if TYPE_CHECKING:
    import torch

CacheKey = tuple[str, str]
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_STORE_DTYPES = ("native", "fp16", "fp32")


@dataclass(frozen=True, eq=False)
class Embedding:
    """One image through a SAM image encoder.

    ``features``: ``[1, C, h, w]`` tensor (C=256, h=w=64 for the real
    variants). ``original_size_hw``: the image's ``(H, W)`` in pixels.
    ``input_size_hw``: its size after resizing the longest side to the
    encoder's ``img_size`` (before padding).
    """

    features: torch.Tensor
    original_size_hw: tuple[int, int]
    input_size_hw: tuple[int, int]
    image_key: str
    model_version: str

    @property
    def key(self) -> CacheKey:
        return (self.image_key, self.model_version)

    @property
    def nbytes(self) -> int:
        return int(self.features.numel() * self.features.element_size())


def content_hash(image: np.ndarray) -> str:
    """Hex digest (32 chars) of an array's shape, dtype and pixels."""
    array = np.ascontiguousarray(image)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.shape}|{array.dtype.str}|".encode())
    digest.update(array.data)
    return digest.hexdigest()


def image_key(name: str) -> str:
    """A cache-safe image key: ``name`` itself when it is a safe file name
    (letters, digits, ``._-``; <= 200 chars), else ``id-`` + a hash of it."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"image key must be a non-empty string, got {name!r}")
    if _SAFE_NAME.match(name):
        return name
    return "id-" + hashlib.blake2b(name.encode(), digest_size=16).hexdigest()


def _check_key(key: CacheKey) -> CacheKey:
    if not (isinstance(key, tuple) and len(key) == 2):
        raise ValueError(f"cache key must be (image_key, model_version), got {key!r}")
    for part in key:
        if not isinstance(part, str) or not _SAFE_NAME.match(part):
            raise ValueError(
                f"cache key part {part!r} must be 1-200 chars of letters, digits, '.', '_' "
                "or '-' (it names a file in the disk tier)"
            )
    return key


class EmbeddingCache:
    """LRU of ``Embedding`` by bytes, with an optional disk tier. Thread-safe."""

    def __init__(
        self,
        max_bytes: int = 512 * 1024**2,
        *,
        store_dtype: str = "native",
        disk_dir: Path | str | None = None,
        disk_max_bytes: int | None = None,
        device: str = "cpu",
        disk: DiskTier | None = None,
    ) -> None:
        """``disk``: an existing disk tier to share (then ``disk_dir`` and
        ``disk_max_bytes`` must be left out); see also ``resized``."""
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if store_dtype not in _STORE_DTYPES:
            raise ValueError(f"store_dtype must be one of {_STORE_DTYPES}, got {store_dtype!r}")
        self.max_bytes = int(max_bytes)
        self.store_dtype = store_dtype
        if disk is not None and (disk_dir is not None or disk_max_bytes is not None):
            raise ValueError("give either disk (a shared DiskTier) or disk_dir, not both")
        if disk is None and disk_dir is not None:
            disk = DiskTier(disk_dir, disk_max_bytes)
        self.disk = disk
        self.device = device
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, Embedding] = OrderedDict()
        self._inflight: dict[CacheKey, Future[Embedding]] = {}
        self._bytes = 0
        self._counts = dict.fromkeys(
            (
                "hits",
                "disk_hits",
                "misses",
                "computes",
                "puts",
                "waits",
                "evictions",
                "disk_writes",
            ),
            0,
        )

    @property
    def disk_dir(self) -> Path | None:
        return self.disk.root if self.disk is not None else None

    @property
    def disk_max_bytes(self) -> int | None:
        return self.disk.max_bytes if self.disk is not None else None

    def resized(self, max_bytes: int) -> EmbeddingCache:
        """A new, empty cache with another memory bound and the same dtype, device
        and disk tier (the same ``DiskTier``: same directory, bound and accounting)."""
        return EmbeddingCache(
            max_bytes, store_dtype=self.store_dtype, device=self.device, disk=self.disk
        )

    # -- public API -------------------------------------------------------------------

    def get(self, key: CacheKey) -> Embedding | None:
        """The embedding from memory, else from disk (then kept in memory), else None."""
        key = _check_key(key)
        with self._lock:
            found = self._memory_get(key)
        if found is not None:
            return found
        loaded = self._disk_read(key)
        if loaded is None:
            with self._lock:
                self._counts["misses"] += 1
            return None
        return self._memory_put(loaded, count_disk_hit=True)

    def put(self, embedding: Embedding) -> Embedding:
        """Store (memory and disk); returns the stored form (maybe converted to fp16)."""
        _check_key(embedding.key)
        stored = self._convert(embedding)
        self._disk_write(stored)
        with self._lock:
            self._counts["puts"] += 1
        return self._memory_put(stored)

    def get_or_compute(self, key: CacheKey, compute: Callable[[], Embedding]) -> Embedding:
        """The cached embedding, or ``compute()`` run once however many threads ask."""
        key = _check_key(key)
        with self._lock:
            found = self._memory_get(key)
            if found is not None:
                return found
            future = self._inflight.get(key)
            leader = future is None
            if future is None:
                future = self._inflight[key] = Future()
            else:
                self._counts["waits"] += 1
        if not leader:
            return future.result()
        try:
            result = self._load_or_compute(key, compute)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    def stats(self) -> dict[str, int]:
        """Counters and the memory tier's size.

        ``hits`` (memory), ``disk_hits``, ``misses`` (in neither tier),
        ``computes`` (``get_or_compute`` ran ``compute``), ``puts``, ``waits``
        (callers that waited for another thread's compute), ``evictions``,
        ``disk_writes``; ``entries``, ``bytes``, ``max_bytes``; the disk tier's
        ``disk_bytes``, ``disk_files`` (the whole shared directory, as of its last
        scan plus this process's writes), ``disk_evictions`` (files this process
        deleted), ``disk_scans`` (all 0 without a disk tier).
        """
        disk = (
            self.disk.stats()
            if self.disk is not None
            else dict.fromkeys(("disk_bytes", "disk_files", "disk_evictions", "disk_scans"), 0)
        )
        with self._lock:
            return {
                **self._counts,
                "entries": len(self._entries),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                **disk,
            }

    def clear(self) -> None:
        """Empty the memory tier (the disk tier is left alone)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- memory tier ------------------------------------------------------------------

    def _memory_get(self, key: CacheKey) -> Embedding | None:
        """Caller holds the lock. A hit also refreshes the disk file's recency (a
        syscall at most once per ``DiskTier.touch_interval_s`` per key)."""
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        self._counts["hits"] += 1
        if self.disk is not None:
            self.disk.touch(key[0], key[1])
        return found

    def _memory_put(self, embedding: Embedding, *, count_disk_hit: bool = False) -> Embedding:
        size = embedding.nbytes
        with self._lock:
            if count_disk_hit:
                self._counts["disk_hits"] += 1
            old = self._entries.pop(embedding.key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if size > self.max_bytes:
                return embedding
            self._entries[embedding.key] = embedding
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes
                self._counts["evictions"] += 1
        return embedding

    def _load_or_compute(self, key: CacheKey, compute: Callable[[], Embedding]) -> Embedding:
        loaded = self._disk_read(key)
        if loaded is not None:
            return self._memory_put(loaded, count_disk_hit=True)
        with self._lock:
            self._counts["misses"] += 1
        computed = compute()
        if computed.key != key:
            raise ValueError(f"compute() returned an embedding for {computed.key}, not {key}")
        with self._lock:
            self._counts["computes"] += 1
        return self.put(computed)

    def _convert(self, embedding: Embedding) -> Embedding:
        import torch

        target = {"fp16": torch.float16, "fp32": torch.float32}.get(self.store_dtype)
        if target is None or embedding.features.dtype == target:
            return embedding
        return dataclasses.replace(embedding, features=embedding.features.to(target))

    # -- disk tier --------------------------------------------------------------------

    def _disk_write(self, embedding: Embedding) -> None:
        import torch

        if self.disk is None:
            return
        features = embedding.features.detach()
        if features.dtype not in (torch.float16, torch.float32):
            features = features.float()  # numpy has no bfloat16
        self.disk.write(
            embedding.image_key,
            embedding.model_version,
            {
                "features": features.cpu().numpy(),
                "original_size_hw": np.asarray(embedding.original_size_hw, dtype=np.int64),
                "input_size_hw": np.asarray(embedding.input_size_hw, dtype=np.int64),
            },
        )
        with self._lock:
            self._counts["disk_writes"] += 1

    def _disk_read(self, key: CacheKey) -> Embedding | None:
        import torch

        arrays = self.disk.read(key[0], key[1]) if self.disk is not None else None
        if arrays is None:
            return None  # never written, evicted, or unreadable: a miss
        try:
            features = torch.from_numpy(arrays["features"]).to(self.device)
            original = tuple(int(v) for v in arrays["original_size_hw"])
            input_size = tuple(int(v) for v in arrays["input_size_hw"])
        except (KeyError, TypeError, ValueError):
            return None  # a file of another layout: recompute
        if features.ndim != 4 or len(original) != 2 or len(input_size) != 2:
            return None
        embedding = Embedding(
            features=features,
            original_size_hw=(original[0], original[1]),
            input_size_hw=(input_size[0], input_size[1]),
            image_key=key[0],
            model_version=key[1],
        )
        return self._convert(embedding)
