"""``POST /queue/rank``: re-rank the live queue under a policy; ``GET /queue/policy``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from starlette.concurrency import run_in_threadpool

from engine.review.ranking import current_policy, rank_backlog
from engine.sampling.policy import policy_from
from engine.serving.deps import SettingsDep, StoreDep
from engine.serving.schemas.common import ErrorOut
from engine.serving.schemas.ranking import PolicyIn, PolicyOut, RankOut

router = APIRouter(prefix="/queue", tags=["queue"])


@router.post(
    "/rank",
    response_model=RankOut,
    summary="Re-rank the whole backlog under a policy (reviewers)",
    description="Scores every unlabeled item again from its stored prediction (class rows, "
    "region attributes, embeddings, stochastic-pass signals) under the given policy, "
    "orders the head for diversity when asked, and makes the policy the queue's current "
    "one. No model runs. Fields left out take their defaults.",
    responses={422: {"model": ErrorOut, "description": "a policy field is invalid"}},
)
async def rank(store: StoreDep, body: Annotated[PolicyIn, Body()]) -> RankOut:
    policy = policy_from(body.fields())
    report = await run_in_threadpool(rank_backlog, store, policy)
    return RankOut.of(report)


@router.get("/policy", response_model=PolicyOut, summary="The queue's current ranking policy")
def policy(store: StoreDep, settings: SettingsDep) -> PolicyOut:
    return PolicyOut.of(current_policy(store, settings.rank_policy))
