"""``POST /feedback``: an editor's accept / edit / reject / skip, recorded once per key."""

from __future__ import annotations

from fastapi import APIRouter, Response

from engine.review.decisions import record_decision
from engine.serving.deps import AnnotatorDep, StoreDep
from engine.serving.schemas.common import ErrorOut
from engine.serving.schemas.feedback import FeedbackIn, FeedbackOut
from engine.types import Feedback

router = APIRouter(prefix="/feedback", tags=["feedback"])


def to_feedback(body: FeedbackIn, annotator: str) -> Feedback:
    """The core record of ``body``; ``engine.review.decisions`` validates it against the
    stored item / suggestion."""
    return Feedback(
        item_id=body.item_id,
        action=body.action,
        client_key=body.client_key,
        suggestion_id=body.suggestion_id,
        label=body.label,
        region=None if body.region is None else body.region.to_region(),
        annotator=annotator,
        model_version=body.model_version,
    )


@router.post(
    "",
    response_model=FeedbackOut,
    status_code=201,
    summary="Record a decision",
    description="Accept, edit, reject or skip a suggestion (``suggestion_id``) or a whole "
    "item. The annotator comes from the ``X-Annotator`` header. Posting the same "
    "``client_key`` again records nothing new and answers 200 with the first record, "
    "so clients can retry safely.",
    responses={
        200: {"model": FeedbackOut, "description": "a retry: the record of the first post"},
        404: {"model": ErrorOut, "description": "no such item or suggestion"},
        422: {"model": ErrorOut, "description": "the region or suggestion does not fit"},
    },
)
def post_feedback(
    body: FeedbackIn, store: StoreDep, annotator: AnnotatorDep, response: Response
) -> FeedbackOut:
    decision = record_decision(store, to_feedback(body, annotator))
    if not decision.created:
        response.status_code = 200
    return FeedbackOut.of(decision.record)
