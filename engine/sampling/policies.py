"""Task defaults: how region / mask / token scores become one score per item.

Detection (``detection_item_scores``)
    Region score: the detector's class row scored *before* any display
    threshold. A YOLO row holds independent per-class sigmoids, not a
    distribution, so ``detection_region_scores`` uses
    ``max_c binary_entropy(p_c)`` (an adapter that stores softmax rows may use
    ``margin`` / ``entropy`` from ``engine.sampling.scores`` instead).
    Item score: ``max`` over the boxes shown to the annotator (confidence >=
    ``display_threshold``). An image where nothing passed the threshold is not
    "certain": it is scored from its ``n_candidates`` best sub-threshold
    candidates (by confidence). An image with no candidate at all gets
    ``empty_score`` (default 1.0, label it first): the model sees nothing,
    which is the known blind spot of uncertainty sampling for detection.

Masks (``mask_item_scores``)
    Region score from SAM's own quality heads:
    ``1 - min(predicted_iou, stability_score)`` (both clipped to ``[0, 1]``; the
    IoU head is a regression and can overshoot slightly), so a mask is as
    uncertain as its weakest quality signal. Item score: ``max`` over masks;
    no mask at all -> ``empty_score`` (default 1.0).

Entity spans (``sentence_scores``)
    Token score: normalised ``entropy`` of the per-token tag distribution.
    Span score: ``mean`` over its tokens. Sentence score: ``max`` over its
    spans; a sentence with no entity span uses the ``max`` token score so that
    "found nothing" is not automatically certain. A sentence with no tokens
    gets ``empty_score`` (default 0.0: nothing to label).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.sampling._validate import Float64Array, as_float_array, as_index_array, check_count
from engine.sampling.reductions import Reduction, get_reduction, reduce_groups
from engine.sampling.scores import binary_entropy


def _flat(values: npt.ArrayLike, name: str, n: int | None = None) -> Float64Array:
    arr = as_float_array(values, name).astype(np.float64, copy=False)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} entries, expected {n}")
    return arr


def detection_region_scores(class_scores: npt.ArrayLike) -> Float64Array:
    """``max_c binary_entropy(class_scores[:, c])`` for per-class sigmoid rows ``[n_boxes, C]``."""
    arr = as_float_array(class_scores, "class_scores")
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"class_scores must be [n_boxes, n_classes>=1], got {arr.shape}")
    if arr.shape[0] == 0:
        return np.zeros(0)
    return binary_entropy(arr).max(axis=1).astype(np.float64)


def _best_candidates(
    confidences: Float64Array, groups: npt.NDArray[np.intp], rows: npt.NDArray[np.intp], n: int
) -> npt.NDArray[np.intp]:
    """The ``n`` highest-confidence ``rows`` of each group (rows = indices into the arrays)."""
    order = rows[np.lexsort((-confidences[rows], groups[rows]))]
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    rank_in_group = np.arange(len(order)) - np.repeat(starts, counts)
    return order[rank_in_group < n]


def detection_item_scores(
    region_scores: npt.ArrayLike,
    confidences: npt.ArrayLike,
    group_index: npt.ArrayLike,
    n_items: int,
    *,
    display_threshold: float = 0.25,
    n_candidates: int = 3,
    reduction: str | Reduction = "max",
    empty_score: float = 1.0,
) -> Float64Array:
    """One score per image from its candidate boxes (all of them, before thresholding).

    ``region_scores``, ``confidences`` (in [0, 1]) and ``group_index`` (image of
    each box) are ``[n_boxes]``; returns ``float64[n_items]``.
    """
    scores = _flat(region_scores, "region_scores")
    conf = _flat(confidences, "confidences", len(scores))
    if conf.size and (conf.min() < 0 or conf.max() > 1):
        raise ValueError("confidences must lie in [0, 1]")
    if not 0.0 <= display_threshold <= 1.0:
        raise ValueError(f"display_threshold must be in [0, 1], got {display_threshold}")
    if check_count(n_candidates, "n_candidates") < 1:
        raise ValueError("n_candidates must be >= 1")
    groups = as_index_array(group_index, "group_index", n_items)
    if len(groups) != len(scores):
        raise ValueError(f"group_index has {len(groups)} entries for {len(scores)} boxes")
    shown = conf >= display_threshold
    has_shown = np.bincount(groups[shown], minlength=n_items) > 0
    hidden_rows = np.flatnonzero(~has_shown[groups])
    keep = np.flatnonzero(shown)
    if len(hidden_rows):
        keep = np.r_[keep, _best_candidates(conf, groups, hidden_rows, n_candidates)]
    return reduce_groups(
        scores[keep],
        groups[keep],
        n_items=n_items,
        reduction=get_reduction(reduction),
        empty_value=empty_score,
    )


def mask_region_scores(
    predicted_iou: npt.ArrayLike, stability_score: npt.ArrayLike
) -> Float64Array:
    """``1 - min(iou, stability)`` per mask (both clipped to [0, 1])."""
    iou = np.clip(_flat(predicted_iou, "predicted_iou"), 0.0, 1.0)
    stability = np.clip(_flat(stability_score, "stability_score", len(iou)), 0.0, 1.0)
    return 1.0 - np.minimum(iou, stability)


def mask_item_scores(
    predicted_iou: npt.ArrayLike,
    stability_score: npt.ArrayLike,
    group_index: npt.ArrayLike,
    n_items: int,
    *,
    reduction: str | Reduction = "max",
    empty_score: float = 1.0,
) -> Float64Array:
    """Per-item ``reduction`` of ``mask_region_scores`` over masks ``[n_masks]``."""
    return reduce_groups(
        mask_region_scores(predicted_iou, stability_score),
        group_index,
        n_items=n_items,
        reduction=reduction,
        empty_value=empty_score,
    )


def sentence_scores(
    token_scores: npt.ArrayLike,
    token_sentence: npt.ArrayLike,
    n_sentences: int,
    token_span: npt.ArrayLike | None = None,
    *,
    empty_score: float = 0.0,
) -> Float64Array:
    """Sentence scores from token scores ``[n_tokens]`` (see the module docstring).

    ``token_sentence[i]`` is the sentence of token ``i``; ``token_span[i]`` is
    its entity span id (``-1`` outside any span). A span's tokens must share a
    sentence. Returns ``float64[n_sentences]``.
    """
    tokens = _flat(token_scores, "token_scores")
    sentence = as_index_array(token_sentence, "token_sentence", n_sentences)
    if len(sentence) != len(tokens):
        raise ValueError(f"token_sentence has {len(sentence)} entries for {len(tokens)} tokens")
    token_max = reduce_groups(tokens, sentence, n_items=n_sentences, empty_value=empty_score)
    if token_span is None:
        return token_max
    span = np.asarray(token_span)
    if span.shape != tokens.shape or (span.size and span.dtype.kind not in "iu"):
        raise ValueError(f"token_span must be int[{len(tokens)}] with -1 outside spans")
    in_span = np.flatnonzero(span >= 0)
    if len(in_span) == 0:
        return token_max
    span_ids = span[in_span].astype(np.intp)
    n_spans = int(span_ids.max()) + 1
    span_score = reduce_groups(tokens[in_span], span_ids, n_items=n_spans, reduction="mean")
    span_sentence = _span_sentence(sentence[in_span], span_ids, n_spans)
    used = span_sentence >= 0
    from_spans = reduce_groups(span_score[used], span_sentence[used], n_items=n_sentences)
    has_span = np.bincount(span_sentence[used], minlength=n_sentences) > 0
    return np.where(has_span, from_spans, token_max)


def _span_sentence(
    sentence: npt.NDArray[np.intp], span_ids: npt.NDArray[np.intp], n_spans: int
) -> npt.NDArray[np.intp]:
    """Sentence of each span (-1 for unused span ids); raise if a span crosses sentences."""
    lo = reduce_groups(sentence, span_ids, n_items=n_spans, reduction="min", empty_value=-1)
    hi = reduce_groups(sentence, span_ids, n_items=n_spans, reduction="max", empty_value=-1)
    if (lo != hi).any():
        raise ValueError(f"entity span {int(np.argmax(lo != hi))} crosses a sentence boundary")
    return lo.astype(np.intp)
