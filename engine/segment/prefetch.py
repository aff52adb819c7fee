"""Background prefetch: encode the images an editor is about to open.

After ``/queue/next`` leases an item, the route asks for a prefetch; the
request is put on a small bounded queue and the call returns at once. One
daemon worker thread takes requests in order, asks ``plan`` which items to
encode (the leased one first, then the next ones of the queue) and runs
``ensure`` on each. With one worker no two prefetches encode at once, and
the embedding cache's single-flight ``get_or_compute`` makes a click that
arrives mid-encode wait for that encode instead of starting a second one.
A full queue drops the request (counted); every error is logged and
counted, never raised to the client. ``close`` stops the worker between two
items and waits for the one being encoded: a thread still inside torch when
the interpreter exits aborts the process.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Literal

from engine.store import Store

log = logging.getLogger(__name__)

Outcome = Literal["encoded", "cached"]
PlanFn = Callable[[Store, str], list[str]]
EnsureFn = Callable[[Store, str], Outcome]


class Prefetcher:
    """One worker thread over a bounded request queue; see the module doc."""

    def __init__(self, plan: PlanFn, ensure: EnsureFn, *, max_pending: int = 8) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self._plan = plan
        self._ensure = ensure
        # None stops the worker.
        self._requests: queue.Queue[tuple[Store, str] | None] = queue.Queue(maxsize=max_pending)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._outstanding = 0  # requests queued or being served
        self._counts = dict.fromkeys(
            ("requests", "dropped", "planned", "encoded", "cached", "errors"), 0
        )

    def request(self, store: Store, item_id: str) -> bool:
        """Queue a prefetch around ``item_id``; False when the queue was full (dropped)."""
        with self._lock:
            self._counts["requests"] += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="embedding-prefetch", daemon=True
                )
                self._thread.start()
            self._outstanding += 1
        try:
            self._requests.put_nowait((store, item_id))
        except queue.Full:
            with self._lock:
                self._outstanding -= 1
                self._counts["dropped"] += 1
            return False
        return True

    def stats(self) -> dict[str, int]:
        """``requests``, ``dropped`` (queue full), ``planned`` (items looked at),
        ``encoded``, ``cached`` (already had an embedding), ``errors``, and
        ``outstanding`` (requests queued or being served)."""
        with self._lock:
            return {**self._counts, "outstanding": self._outstanding}

    def idle(self) -> bool:
        """No request queued or being served."""
        with self._lock:
            return self._outstanding == 0

    def close(self, timeout_s: float = 300.0) -> None:
        """Stop the worker once the item it is encoding is done (the rest are dropped)."""
        self._stopping.set()
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        while True:
            try:
                self._requests.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                self._outstanding -= 1
        self._requests.put(None)
        thread.join(timeout_s)
        if thread.is_alive():  # pragma: no cover - an encode hung for minutes
            log.error("prefetch: the worker did not stop within %gs", timeout_s)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _run(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            try:
                self._serve(*request)
            finally:
                with self._lock:
                    self._outstanding -= 1

    def _serve(self, store: Store, item_id: str) -> None:
        try:
            item_ids = self._plan(store, item_id)
        except Exception:
            log.exception("prefetch: could not plan after item %r", item_id)
            self._count("errors")
            return
        self._count("planned", len(item_ids))
        for planned in item_ids:
            if self._stopping.is_set():
                return
            try:
                outcome = self._ensure(store, planned)
            except Exception as exc:
                log.warning("prefetch: item %r not encoded: %s", planned, exc)
                self._count("errors")
            else:
                self._count(outcome)
