"""The server's memory of recent masks, so a client can refine one by its id.

Each mask the interactive route returns gets a ``mask_id``; its low-res
logits (what SAM takes back as ``mask_input``) are kept here, in a small LRU
bounded by entry count (about 256 KB each for the real variants). An entry
belongs to one item and one model version: asked for under another version
(the model was swapped) it is gone, like an evicted one. Ids are random and
live in one server process only.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, eq=False)
class StoredMask:
    item_id: str
    model_version: str
    low_res_logits: Any  # torch.Tensor [1, L, L], as MaskResult.low_res_logits


class MaskMemory:
    """Thread-safe LRU of ``StoredMask`` by ``mask_id``."""

    def __init__(self, max_entries: int = 128) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, StoredMask] = OrderedDict()
        self._counts = dict.fromkeys(("puts", "hits", "misses", "evictions"), 0)

    def put(self, item_id: str, model_version: str, low_res_logits: Any) -> str:
        """Keep a copy of the logits; returns the new mask's id."""
        mask_id = secrets.token_hex(12)
        stored = StoredMask(item_id, model_version, low_res_logits.detach().clone())
        with self._lock:
            self._entries[mask_id] = stored
            self._counts["puts"] += 1
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self._counts["evictions"] += 1
        return mask_id

    def get(self, mask_id: str, model_version: str) -> StoredMask | None:
        """The mask, or None when unknown, evicted, or made by another model version."""
        with self._lock:
            found = self._entries.get(mask_id)
            if found is None or found.model_version != model_version:
                self._counts["misses"] += 1
                return None
            self._entries.move_to_end(mask_id)
            self._counts["hits"] += 1
            return found

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "entries": len(self._entries), "max_entries": self.max_entries}
