"""``POST /feedback``: an editor's accept / edit / reject / skip, recorded once per key."""

from __future__ import annotations

from fastapi import APIRouter, Response

from engine.review import queue
from engine.serving.deps import AnnotatorDep, StoreDep
from engine.serving.schemas import ErrorOut, FeedbackIn, FeedbackOut
from engine.store import Store
from engine.types import Box, Feedback, Item, Mask, Region, Span

router = APIRouter(prefix="/feedback", tags=["feedback"])


def check_region_fits(item: Item, region: Region | None) -> None:
    """Raise ``ValueError`` when ``region`` cannot belong to ``item``."""
    if region is None:
        return
    if isinstance(region, Span):
        if item.kind != "text" or item.text is None:
            raise ValueError(f"a span region needs a text item; {item.item_id!r} is an image")
        region.check_within(item.text)
    elif isinstance(region, Box | Mask) and item.kind != "image":
        raise ValueError(f"a {region.kind} region needs an image item; {item.item_id!r} is a text")


def to_feedback(body: FeedbackIn, annotator: str, store: Store) -> Feedback:
    """Validate ``body`` against the stored item / suggestion and build the core record."""
    item = store.get_item(body.item_id)
    region = None if body.region is None else body.region.to_region()
    check_region_fits(item, region)
    model_version = body.model_version
    if body.suggestion_id is not None:
        # Store.record_feedback refuses a suggestion of another item.
        suggestion = store.get_suggestion(body.suggestion_id)
        model_version = model_version or suggestion.suggestion.model_version
    return Feedback(
        item_id=item.item_id,
        action=body.action,
        client_key=body.client_key,
        suggestion_id=body.suggestion_id,
        label=body.label,
        region=region,
        annotator=annotator,
        model_version=model_version,
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
    record = store.record_feedback(to_feedback(body, annotator, store))
    queue.after_feedback(store, record)
    if not record.created:
        response.status_code = 200
    return FeedbackOut.of(record)
