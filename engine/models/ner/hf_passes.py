"""Forward passes of the transformers tagger: tag rows, hidden states, MC dropout.

``forward_windows`` runs length-sorted, padded batches of windows and returns,
per window, the fp32 tag-probability rows of its content tokens and (when
asked, from the same forward: ``output_hidden_states=True``, the last layer)
their final encoder hidden states. ``mean_embedding`` pools one text's merged
hidden rows into the item embedding (mean over content tokens, then
``engine.sampling.embeddings.project_embedding``: at most 256 wide,
L2-normalised).

MC dropout (``mc_word_probs``, opt-in through the tagger's ``mc_passes``): the
same windows run ``T`` more times with only the ``torch.nn.Dropout`` modules in
train mode (everything else stays in eval; in transformers 5 the attention
dropout follows the attention module's own ``training`` flag, so it stays off),
under a fixed seed (the passes differ from each other, a repeated call gives the
same passes). Each pass is merged and aggregated to words like the main pass;
the result per text is ``float16[T, n_words, n_tags]`` (``signals["mc_token_probs"]``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from engine.models.ner.decode import aggregate_words
from engine.models.ner.windows import Window, length_batches, merge_windows, pad_batch
from engine.sampling.embeddings import project_embedding

FloatArray = npt.NDArray[np.float32]
MC_SEED = 0


@dataclass(frozen=True)
class Encoded:
    """One text's content tokens: ids, char offsets ``[n, 2]`` and word ids."""

    ids: list[int]
    offsets: npt.NDArray[np.int64]
    word_ids: npt.NDArray[np.intp]


class WindowTagger(Protocol):
    """What the passes need from ``engine.models.ner.hf.HfTokenTagger``."""

    model: Any
    device: str
    batch_size: int
    pad_id: int
    prefix_ids: list[int]
    suffix_ids: list[int]
    aggregation: str


@dataclass(frozen=True)
class WindowRows:
    """Per window: tag rows ``[length, n_tags]``; hidden rows ``[length, hidden]`` or None."""

    probs: list[FloatArray]
    hidden: list[FloatArray] | None


def forward_windows(
    tagger: WindowTagger,
    encoded: Sequence[Encoded],
    windows: Sequence[Window],
    n_tags: int,
    *,
    hidden: bool = False,
) -> WindowRows:
    """One forward over every window (call under ``torch.inference_mode``)."""
    import torch

    probs: list[FloatArray] = [np.zeros((0, n_tags), np.float32)] * len(windows)
    states: list[FloatArray] = [np.zeros((0, 0), np.float32)] * len(windows)
    n_prefix = len(tagger.prefix_ids)
    for batch in length_batches(windows, tagger.batch_size):
        seqs = [
            tagger.prefix_ids
            + encoded[windows[i].text_index].ids[windows[i].start : windows[i].end]
            + tagger.suffix_ids
            for i in batch
        ]
        ids, mask = pad_batch(seqs, tagger.pad_id)
        out = tagger.model(
            input_ids=torch.from_numpy(ids).to(tagger.device),
            attention_mask=torch.from_numpy(mask).to(tagger.device),
            output_hidden_states=hidden,
        )
        rows = out.logits.float().softmax(dim=-1).cpu().numpy()
        last = out.hidden_states[-1].float().cpu().numpy() if hidden else None
        for row, i in enumerate(batch):
            keep = slice(n_prefix, n_prefix + windows[i].length)
            probs[i] = rows[row, keep]
            if last is not None:
                states[i] = last[row, keep]
    return WindowRows(probs, states if hidden else None)


def merge_per_text(
    encoded: Sequence[Encoded],
    windows: Sequence[Window],
    rows: Sequence[FloatArray],
    width: int,
) -> list[FloatArray]:
    """Token rows ``[n_tokens, width]`` per text from the window rows."""
    by_text: list[list[int]] = [[] for _ in encoded]
    for k, win in enumerate(windows):
        by_text[win.text_index].append(k)
    return [
        merge_windows([windows[k] for k in ks], [rows[k] for k in ks], len(enc.ids))
        if ks
        else np.zeros((0, width), dtype=np.float32)
        for enc, ks in zip(encoded, by_text, strict=True)
    ]


def mean_embedding(hidden_rows: FloatArray) -> FloatArray | None:
    """Mean over a text's content tokens, reduced and L2-normalised; None without tokens."""
    if hidden_rows.shape[0] == 0:
        return None
    return project_embedding(hidden_rows.astype(np.float64).mean(axis=0))


@contextmanager
def dropout_active(model: Any) -> Iterator[None]:
    """Only the ``torch.nn.Dropout`` modules of ``model`` in train mode, restored after."""
    import torch

    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    before = [m.training for m in dropouts]
    try:
        for m in dropouts:
            m.train(True)
        yield
    finally:
        for m, was in zip(dropouts, before, strict=True):
            m.train(was)


def mc_word_probs(
    tagger: WindowTagger,
    encoded: Sequence[Encoded],
    windows: Sequence[Window],
    n_tags: int,
    passes: int,
) -> list[npt.NDArray[np.float16]]:
    """``float16[passes, n_words, n_tags]`` per text under MC dropout (module docstring)."""
    import torch

    per_pass: list[list[FloatArray]] = []
    devices = [torch.device(tagger.device).index or 0] if tagger.device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), dropout_active(tagger.model):
        torch.manual_seed(MC_SEED)
        for _ in range(passes):
            rows = forward_windows(tagger, encoded, windows, n_tags).probs
            merged = merge_per_text(encoded, windows, rows, n_tags)
            per_pass.append(
                [
                    aggregate_words(p, enc.word_ids, tagger.aggregation)
                    for p, enc in zip(merged, encoded, strict=True)
                ]
            )
    return [
        np.stack([per_pass[t][i] for t in range(passes)]).astype(np.float16)
        for i in range(len(encoded))
    ]
