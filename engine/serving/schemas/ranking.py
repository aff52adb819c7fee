"""Ranking bodies: a policy in, a re-rank report out, an item's ranking explained."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from engine.review.explain import ItemWhy, RegionWhy
from engine.review.ranking import RankReport
from engine.sampling.policy import RankPolicy


class PolicyIn(BaseModel):
    """Any subset of the policy's fields; the rest keep their defaults (not the current ones)."""

    model_config = {"extra": "forbid"}

    score: str | None = Field(
        default=None,
        description="auto, least_confidence, margin, entropy, bald, variation_ratio",
    )
    reduction: str | None = Field(default=None, description="max, mean, sum, topk_mean")
    top_k: int | None = Field(default=None, description="k of topk_mean")
    empty_score: float | None = Field(
        default=None, description="score of an image with no detection (the blind spot)"
    )
    diversity: str | None = Field(default=None, description="none, kcenter, hybrid")
    head: int | None = Field(default=None, description="items of the queue's head reordered")
    picks: int | None = Field(default=None, description="diverse picks served first")
    weight: float | None = Field(default=None, description="hybrid: weight of the distance")
    sampler: str | None = Field(default=None, description="top, power")
    beta: float | None = Field(default=None, description="power sampler exponent")
    seed: int | None = Field(default=None, description="power sampler seed")

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class PolicyOut(BaseModel):
    policy: dict[str, Any]
    describe: str

    @classmethod
    def of(cls, policy: RankPolicy) -> PolicyOut:
        return cls(policy=policy.to_dict(), describe=policy.describe())


class RankOut(BaseModel):
    policy: PolicyOut
    scored: int = Field(description="unlabeled items with a stored prediction, scored again")
    changed: int = Field(description="items whose score changed")
    head: int = Field(description="items of the head reordered (0 without diversity)")
    head_with_embedding: int
    seconds: float

    @classmethod
    def of(cls, report: RankReport) -> RankOut:
        return cls(
            policy=PolicyOut.of(report.policy),
            scored=report.n_scored,
            changed=report.n_changed,
            head=report.n_head,
            head_with_embedding=report.n_head_embedded,
            seconds=report.seconds,
        )


class ClassProbOut(BaseModel):
    label: str
    prob: float


class RegionWhyOut(BaseModel):
    position: int = Field(description="row of the suggestion in its prediction")
    label: str
    confidence: float
    uncertainty: float | None = Field(description="this region's score under the policy")
    top_classes: list[ClassProbOut]
    signals: dict[str, float] = Field(description="stochastic-pass disagreement, where run")

    @classmethod
    def of(cls, region: RegionWhy) -> RegionWhyOut:
        return cls(
            position=region.position,
            label=region.label,
            confidence=region.confidence,
            uncertainty=region.uncertainty,
            top_classes=[ClassProbOut(label=c, prob=p) for c, p in region.top_classes],
            signals=region.signals,
        )


class ItemRankingOut(BaseModel):
    item_id: str
    prediction_id: int | None
    model_version: str | None
    policy: PolicyOut
    queue_score: float | None = Field(description="the score the queue serves by")
    uncertainty: float | None = Field(description="the prediction's score under the policy")
    rank: int | None = Field(description="1 + items served before this one")
    regions: list[RegionWhyOut]
    signals: list[str] = Field(description="names of the stored signal arrays")
    has_embedding: bool

    @classmethod
    def of(cls, why: ItemWhy) -> ItemRankingOut:
        return cls(
            item_id=why.item_id,
            prediction_id=why.prediction_id,
            model_version=why.model_version,
            policy=PolicyOut.of(why.policy),
            queue_score=why.queue_score,
            uncertainty=why.uncertainty,
            rank=why.rank,
            regions=[RegionWhyOut.of(r) for r in why.regions],
            signals=why.signals,
            has_embedding=why.has_embedding,
        )
