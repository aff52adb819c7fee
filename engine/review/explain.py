"""Why an item is ranked where it is: ``explain_item``, from what the store keeps.

Everything is recomputed from the stored prediction under the queue's current
policy (``engine.review.ranking.current_policy``): each region's uncertainty
(the number ``policy.score`` gives it before the item reduction), its top-5
classes with probabilities (the class row kept before any threshold), the
stochastic-pass signals where a job ran them, the item's uncertainty, its
queue score and its rank. The queue score can differ from the uncertainty:
a skip lowers it, and a diverse policy reorders the head (a bonus of at most
``head * 1e-9``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.review.ranking import current_policy
from engine.review.scoring import queue_score, region_scores
from engine.review.scoring_text import class_score, word_table, word_uncertainty
from engine.sampling.policies import mask_region_scores
from engine.sampling.policy import RankPolicy
from engine.store import Store
from engine.store.ranking import StoredPrediction
from engine.types import Prediction

TOP_CLASSES = 5


@dataclass(frozen=True)
class RegionWhy:
    position: int
    label: str
    confidence: float
    uncertainty: float | None
    top_classes: list[tuple[str, float]]
    signals: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemWhy:
    item_id: str
    prediction_id: int | None
    model_version: str | None
    policy: RankPolicy
    queue_score: float | None
    uncertainty: float | None
    rank: int | None
    regions: list[RegionWhy]
    signals: list[str]
    has_embedding: bool


def explain_item(
    store: Store, item_id: str, policy: RankPolicy | None = None, *, with_rank: bool = True
) -> ItemWhy:
    """The item's ranking, explained (``NotFoundError`` for an unknown item).

    ``with_rank=False`` skips counting the items ahead (a range count on the queue's
    index: cheap at the head, more for an item deep in a large backlog)."""
    policy = policy or current_policy(store)
    stored = store.stored_prediction(item_id)
    score = store.item_score(item_id)
    rank = store.queue_rank(item_id, score) if with_rank else None
    if stored is None:
        return ItemWhy(item_id, None, None, policy, score, None, rank, [], [], False)
    prediction = stored.prediction
    return ItemWhy(
        item_id=item_id,
        prediction_id=stored.prediction_id,
        model_version=prediction.model_version,
        policy=policy,
        queue_score=score,
        uncertainty=queue_score(prediction, stored.kind, policy),
        rank=rank,
        regions=region_reasons(stored, policy),
        signals=sorted(prediction.signals),
        has_embedding=prediction.embedding is not None,
    )


def region_reasons(stored: StoredPrediction, policy: RankPolicy) -> list[RegionWhy]:
    prediction = stored.prediction
    uncertainty = _region_uncertainty(prediction, stored.kind, policy)
    out = []
    for i, s in enumerate(prediction.suggestions):
        out.append(
            RegionWhy(
                position=i,
                label=s.label,
                confidence=s.score,
                uncertainty=uncertainty[i],
                top_classes=top_classes(prediction, i),
                signals=_region_signals(prediction, i),
            )
        )
    return out


def top_classes(prediction: Prediction, row: int, k: int = TOP_CLASSES) -> list[tuple[str, float]]:
    if not prediction.probs.shape[1]:
        return []
    values = prediction.probs[row]
    best = np.argsort(-values, kind="stable")[:k]
    return [(prediction.class_names[j], round(float(values[j]), 6)) for j in best]


def _region_uncertainty(prediction: Prediction, kind: str, policy: RankPolicy) -> list[Any]:
    n = len(prediction.suggestions)
    out: list[float | None] = [None] * n
    if kind == "text":
        table = word_table(prediction)
        if table is not None and table[0].shape[0]:
            words = word_uncertainty(prediction, table[0], policy)
            span = np.asarray(table[2])
            for i in range(n):
                mine = words[span == i]
                out[i] = float(mine.mean()) if len(mine) else None
        return out
    for i, s in enumerate(prediction.suggestions):
        attrs = s.attributes
        if "predicted_iou" in attrs and "stability_score" in attrs:
            iou, stability = [float(attrs["predicted_iou"])], [float(attrs["stability_score"])]
            out[i] = float(mask_region_scores(iou, stability)[0])
        elif s.region is None and prediction.probs.shape[1]:
            groups = prediction.signals.get("class_groups")
            out[i] = class_score(prediction.probs[i : i + 1], policy, groups)
        elif prediction.probs.shape[1]:
            out[i] = float(region_scores(prediction, [i], policy)[0])
    return out


def _region_signals(prediction: Prediction, row: int) -> dict[str, float]:
    out = {}
    for name in ("tta_variation_ratio", "tta_iou_spread"):
        values = prediction.signals.get(name)
        if values is not None and values.ndim == 1 and len(values) == len(prediction.suggestions):
            out[name] = round(float(values[row]), 6)
    return out
