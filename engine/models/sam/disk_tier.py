"""A directory of arrays, ``<root>/<version>/<key>.npz``, optionally bounded by bytes.

The disk tier of ``EmbeddingCache``; several processes (an embed job's actors,
every server) may share one directory.

- Writes are atomic: a temporary file in the same folder, then ``os.replace``.
  A reader never sees a partial file.
- Reads treat a missing or unreadable file as a miss (``None``), so a file that
  another process evicts under a reader is harmless.
- Recency is the file's mtime: a write sets it, a read touches it
  (``os.utime``), and ``touch`` (called on memory hits) does at most once per
  ``touch_interval_s`` per file, so embeddings in use survive eviction.
- Bound (``max_bytes``, ``None``: unbounded): after a write pushes the
  directory over the bound, the least recently used files are deleted until it
  holds at most ``low_water_fraction`` of it; the file just written is never
  deleted. No scan per write: a running total is seeded by one scan of the
  directory and rescanned (other processes write too) when it goes over the
  bound, every ``rescan_writes`` writes, or ``rescan_interval_s`` after the last
  scan. A directory can therefore overshoot the bound by the writes no scan has
  seen yet: fewer than ``rescan_writes`` files per writing process (or what it
  wrote within ``rescan_interval_s``, whichever comes first).
- Two processes evicting at once may pick the same files; a file already gone
  counts as freed, so together they do not evict much below the low-water mark.
  ``.tmp`` files older than an hour (a writer that crashed) are deleted by scans.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STALE_TMP_S = 3600.0
_MAX_TOUCH_MEMORY = 100_000


@dataclass(frozen=True)
class _File:
    path: str
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class _Scan:
    files: list[_File]  # evictable entries (``*.npz``)
    total_bytes: int  # entries and in-flight temporary files


class DiskTier:
    """Files ``<root>/<version>/<key>.npz``; thread-safe; see the module doc."""

    def __init__(
        self,
        root: Path | str,
        max_bytes: int | None = None,
        *,
        low_water_fraction: float = 0.9,
        rescan_interval_s: float = 30.0,
        rescan_writes: int = 64,
        touch_interval_s: float = 60.0,
    ) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"disk max_bytes must be > 0 or None (unbounded), got {max_bytes}")
        if not 0.0 < low_water_fraction <= 1.0:
            raise ValueError(f"low_water_fraction must be in (0, 1], got {low_water_fraction}")
        if rescan_writes < 1 or rescan_interval_s < 0 or touch_interval_s < 0:
            raise ValueError(
                "rescan_writes must be >= 1 and rescan_interval_s, touch_interval_s >= 0; got "
                f"{rescan_writes}, {rescan_interval_s}, {touch_interval_s}"
            )
        self.root = Path(root)
        self._root_str = str(self.root)
        self.max_bytes = max_bytes
        self.low_water_fraction = low_water_fraction
        self.rescan_interval_s = rescan_interval_s
        self.rescan_writes = rescan_writes
        self.touch_interval_s = touch_interval_s
        self._lock = threading.Lock()
        self._scanned_at: float | None = None  # time.monotonic() of the last scan
        self._bytes = 0
        self._files = 0
        self._writes_since_scan = 0
        self._evictions = 0
        self._scans = 0
        self._touched: dict[str, float] = {}

    def path(self, image_key: str, version: str) -> Path:
        return self.root / version / f"{image_key}.npz"

    # -- entries ----------------------------------------------------------------------

    def read(self, image_key: str, version: str) -> dict[str, np.ndarray] | None:
        """The stored arrays, or ``None`` when the file is missing or unreadable."""
        path = self.path(image_key, version)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError:
            return None  # never written, or evicted (maybe by another process)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # corrupt: the caller recomputes and overwrites it
        self._touch(str(path), force=True)
        return arrays

    def write(self, image_key: str, version: str, arrays: Mapping[str, np.ndarray]) -> int:
        """Store ``arrays`` atomically, then evict if over the bound; returns the file's bytes."""
        path = self.path(image_key, version)
        seed = self._seed()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            with tmp.open("wb") as handle:
                np.savez(handle, **arrays)  # type: ignore[arg-type]
                size_bytes = handle.tell()
            try:
                replaced_bytes: int | None = path.stat().st_size
            except FileNotFoundError:
                replaced_bytes = None
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        with self._lock:
            self._bytes += size_bytes - (replaced_bytes or 0)
            self._files += replaced_bytes is None
            self._writes_since_scan += 1
            self._touched[str(path)] = time.monotonic()
            if self.max_bytes is not None:
                if seed is not None:  # just scanned: evict from that listing, no second scan
                    self._evict(seed, protect=str(path))
                elif self._rescan_due(self.max_bytes):
                    self._rescan_and_evict(protect=str(path))
        return size_bytes

    def touch(self, image_key: str, version: str) -> None:
        """Mark an entry as recently used (at most once per ``touch_interval_s``)."""
        path = os.path.join(self._root_str, version, image_key + ".npz")  # cheap: per click
        self._touch(path, force=False)

    def refresh(self) -> None:
        """Rescan now, and evict if the directory is over the bound."""
        with self._lock:
            self._rescan_and_evict(protect=None)

    def stats(self) -> dict[str, int]:
        """``disk_bytes``, ``disk_files`` (as of the last scan plus this process's writes),
        ``disk_evictions`` (files this process deleted), ``disk_scans``."""
        with self._lock:
            if self._scan_stale():
                self._apply(self._scan())
            return {
                "disk_bytes": self._bytes,
                "disk_files": self._files,
                "disk_evictions": self._evictions,
                "disk_scans": self._scans,
            }

    # -- bookkeeping (callers of _apply, _rescan_and_evict, _evict hold the lock) -----

    def _touch(self, path: str, *, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._touched.get(path)
            if not force and last is not None and now - last < self.touch_interval_s:
                return
            if len(self._touched) >= _MAX_TOUCH_MEMORY:
                self._touched.clear()
            self._touched[path] = now
        with contextlib.suppress(OSError):  # evicted meanwhile: nothing to keep
            os.utime(path)

    def _seed(self) -> _Scan | None:
        """The first scan (then returned), or ``None`` when one was done before."""
        with self._lock:
            if self._scanned_at is not None:
                return None
            scan = self._scan()
            self._apply(scan)
            return scan

    def _scan_stale(self) -> bool:
        if self._scanned_at is None:
            return True
        return time.monotonic() - self._scanned_at >= self.rescan_interval_s

    def _rescan_due(self, max_bytes: int) -> bool:
        return (
            self._bytes > max_bytes
            or self._writes_since_scan >= self.rescan_writes
            or self._scan_stale()
        )

    def _apply(self, scan: _Scan) -> None:
        self._bytes = scan.total_bytes
        self._files = len(scan.files)
        self._writes_since_scan = 0
        self._scanned_at = time.monotonic()
        self._scans += 1

    def _rescan_and_evict(self, protect: str | None) -> None:
        scan = self._scan()
        self._apply(scan)
        self._evict(scan, protect)

    def _evict(self, scan: _Scan, protect: str | None) -> None:
        """Delete ``scan``'s oldest files while the running total is over the bound."""
        if self.max_bytes is None or self._bytes <= self.max_bytes:
            return
        target_bytes = int(self.max_bytes * self.low_water_fraction)
        for entry in sorted(scan.files, key=lambda f: f.mtime_ns):
            if self._bytes <= target_bytes:
                break
            if entry.path == protect:
                continue
            freed = _delete(entry)
            if freed is None:
                continue
            self._bytes -= entry.size_bytes
            self._files -= 1
            self._evictions += freed
            self._touched.pop(entry.path, None)

    def _scan(self) -> _Scan:
        files: list[_File] = []
        total_bytes = 0
        stale_before = time.time() - STALE_TMP_S
        for folder in _subdirs(self.root):
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue  # removed meanwhile
            for entry in entries:
                try:
                    stat = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # evicted or renamed meanwhile
                if entry.name.endswith(".npz"):
                    files.append(_File(entry.path, stat.st_size, stat.st_mtime_ns))
                    total_bytes += stat.st_size
                elif entry.name.endswith(".tmp"):
                    if stat.st_mtime < stale_before:
                        _unlink(entry.path)
                    else:
                        total_bytes += stat.st_size  # a write in flight
        return _Scan(files, total_bytes)


def _subdirs(root: Path) -> list[str]:
    try:
        with os.scandir(root) as entries:
            return [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []  # not created yet


def _delete(entry: _File) -> int | None:
    """Delete ``entry``: 1 if this call deleted it, 0 if it was already gone (freed
    either way), ``None`` if it stays (touched or rewritten since the scan, or busy)."""
    try:
        if os.stat(entry.path).st_mtime_ns > entry.mtime_ns:
            return None
        os.unlink(entry.path)
        return 1
    except FileNotFoundError:
        return 0
    except OSError:
        return None


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
