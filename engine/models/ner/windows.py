"""Split long token sequences into overlapping model windows and merge them back.

A text of ``n`` content tokens (special tokens excluded) is cut into windows of
at most ``window`` tokens; consecutive windows overlap by ``stride`` tokens
(window starts ``0, step, 2 step, ...`` with ``step = window - stride``, the
last window possibly shorter). When merging, each token keeps the row of the
window in which it sits furthest from an edge: the overlap between windows
``k`` and ``k + 1`` is cut in the middle, tokens before the cut come from ``k``
and the rest from ``k + 1``. Spans are decoded only after merging, so an
entity that straddles a seam is decoded once, from one merged sequence.

Batching: windows from all texts are sorted by length and cut into batches of
``batch_size``, each padded only to its own longest window (dynamic padding),
so short sentences never pay for a long one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Window:
    """Content tokens ``[start, end)`` of text ``text_index``."""

    text_index: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def window_starts(n_tokens: int, window: int, stride: int) -> list[int]:
    """Start offsets of the windows covering ``n_tokens`` tokens (``[0]`` for 0 tokens)."""
    if window < 1:
        raise ValueError(f"window must be >= 1 token, got {window}")
    if not 0 <= stride < window:
        raise ValueError(f"stride must be in [0, window={window}), got {stride}")
    starts = [0]
    while starts[-1] + window < n_tokens:
        starts.append(starts[-1] + window - stride)
    return starts


def plan_windows(lengths: Sequence[int], window: int, stride: int) -> list[Window]:
    """All windows of all texts, text by text, in order."""
    return [
        Window(text_index, start, min(start + window, n))
        for text_index, n in enumerate(lengths)
        if n > 0
        for start in window_starts(n, window, stride)
    ]


def length_batches(windows: Sequence[Window], batch_size: int) -> list[list[int]]:
    """Window indices grouped into batches of similar length (longest first)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(windows)), key=lambda i: -windows[i].length)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(input_ids, attention_mask)`` of shape ``[batch, longest]``, right-padded."""
    longest = max(len(s) for s in sequences)
    ids = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


def merge_windows(
    windows: Sequence[Window], rows: Sequence[npt.NDArray[np.float32]], n_tokens: int
) -> npt.NDArray[np.float32]:
    """``[n_tokens, n_classes]`` from the windows of ONE text (in start order).

    ``rows[k]`` holds ``windows[k].length`` rows. The overlap of consecutive
    windows is split at its middle (see the module docstring).
    """
    if len(windows) != len(rows):
        raise ValueError(f"{len(rows)} row blocks for {len(windows)} windows")
    if not windows:
        return np.zeros((0, 0), dtype=np.float32)
    pieces = []
    keep_from = 0
    for k, (win, block) in enumerate(zip(windows, rows, strict=True)):
        if block.shape[0] != win.length:
            raise ValueError(f"window {k} has {block.shape[0]} rows for {win.length} tokens")
        if k + 1 < len(windows):
            following = windows[k + 1]
            keep_to = following.start + (win.end - following.start) // 2
        else:
            keep_to = win.end
        pieces.append(block[keep_from - win.start : keep_to - win.start])
        keep_from = keep_to
    merged = np.concatenate(pieces, axis=0)
    if merged.shape[0] != n_tokens:
        raise ValueError(f"windows cover {merged.shape[0]} tokens, expected {n_tokens}")
    return merged
