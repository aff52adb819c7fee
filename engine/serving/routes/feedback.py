"""``POST /feedback``: an editor's accept / edit / reject / skip, recorded once per key."""

from __future__ import annotations

from fastapi import APIRouter, Response

from engine.review.decisions import record_decision
from engine.serving.deps import PersonDep, StoreDep
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
    "item, as the person of the token (the service token: the ``X-Annotator`` header). "
    "An annotator's decision on an item someone else holds a live lease on is refused "
    "(409, naming the holder and the lease's end); a reviewer's overrules. Posting the same "
    "``client_key`` again records nothing new and answers 200 with the first record, "
    "so clients can retry safely.",
    responses={
        200: {"model": FeedbackOut, "description": "a retry: the record of the first post"},
        404: {"model": ErrorOut, "description": "no such item or suggestion"},
        409: {"model": ErrorOut, "description": "someone else holds a live lease on the item"},
        422: {"model": ErrorOut, "description": "the region or suggestion does not fit"},
    },
)
def post_feedback(
    body: FeedbackIn, store: StoreDep, person: PersonDep, response: Response
) -> FeedbackOut:
    feedback = to_feedback(body, person.name)
    decision = record_decision(store, feedback, respect_leases=not person.may("reviewer"))
    if not decision.created:
        response.status_code = 200
    return FeedbackOut.of(decision.record)
