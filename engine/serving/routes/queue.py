"""The labeling queue: lease the next item, keep the lease alive, give it back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response

from engine.review import queue
from engine.serving.deps import PersonDep, SegmenterDep, SettingsDep, StoreDep, acting_as
from engine.serving.schemas.common import ErrorOut
from engine.serving.schemas.queue import LeaseIn, LeaseOut, ProgressOut, QueueNextIn, ReleaseOut
from engine.store import NotFoundError

router = APIRouter(prefix="/queue", tags=["queue"])

ItemId = Annotated[str, Path(min_length=1, max_length=128)]


@router.post(
    "/next",
    response_model=LeaseOut,
    summary="Lease the next item to label",
    description="The highest-scored unlabeled item nobody holds, leased to the token's "
    "person (the service token: body ``annotator``, else ``X-Annotator``), with its score "
    "and rank. Asking again while holding a "
    "live lease returns the same item. 204 when the queue is empty. In the background the "
    "server then encodes the leased image and the next ``prefetch_items`` of the queue for "
    "click-to-segment (once the segmenter is loaded).",
    responses={204: {"description": "nothing left to label"}},
)
def next_item(
    store: StoreDep,
    settings: SettingsDep,
    segmenter: SegmenterDep,
    person: PersonDep,
    body: Annotated[QueueNextIn | None, Body()] = None,
) -> LeaseOut | Response:
    body = body or QueueNextIn()
    annotator = acting_as(person, body.annotator)
    lease = queue.next_item(
        store,
        annotator,
        lease_seconds=settings.lease_seconds,
        model_version=body.model_version,
        label=body.label,
        label_threshold=body.label_threshold,
        job_id=body.job_id,
        gold_rate=settings.gold_rate,
    )
    if lease is None:
        return Response(status_code=204)
    rank = store.queue_rank(lease.item_id, lease.score)
    out = LeaseOut.of(lease, store.get_item(lease.item_id), settings.lease_seconds, rank)
    segmenter.prefetch_after_lease(store, lease.item_id)  # queued; never blocks or raises
    return out


@router.post(
    "/{item_id}/heartbeat",
    response_model=LeaseOut,
    summary="Extend a lease",
    responses={
        404: {"model": ErrorOut, "description": "no such item"},
        409: {"model": ErrorOut, "description": "the annotator holds no live lease on it"},
    },
)
def heartbeat(
    item_id: ItemId,
    store: StoreDep,
    settings: SettingsDep,
    person: PersonDep,
    body: Annotated[LeaseIn | None, Body()] = None,
) -> LeaseOut:
    annotator = acting_as(person, body.annotator if body else None)
    item = store.get_item(item_id)
    try:
        lease = queue.heartbeat(store, item_id, annotator, lease_seconds=settings.lease_seconds)
    except NotFoundError as exc:
        raise HTTPException(
            409, f"{annotator!r} holds no live lease on item {item_id!r}; ask /queue/next again"
        ) from exc
    return LeaseOut.of(lease, item, settings.lease_seconds)


@router.post(
    "/{item_id}/release",
    response_model=ReleaseOut,
    summary="Give a lease back without a decision",
    responses={404: {"model": ErrorOut, "description": "no such item"}},
)
def release(
    item_id: ItemId,
    store: StoreDep,
    person: PersonDep,
    body: Annotated[LeaseIn | None, Body()] = None,
) -> ReleaseOut:
    annotator = acting_as(person, body.annotator if body else None)
    store.get_item(item_id)
    return ReleaseOut(item_id=item_id, released=queue.release(store, item_id, annotator))


@router.get(
    "/progress",
    response_model=ProgressOut,
    summary="Labeled and remaining items, and this person's pace",
)
def progress(
    store: StoreDep,
    person: PersonDep,
    since: Annotated[
        datetime | None, Query(description="count this person's decisions from here (UTC)")
    ] = None,
) -> ProgressOut:
    labeled, remaining = store.queue_counts()
    start = None if since is None else (since if since.tzinfo else since.replace(tzinfo=UTC))
    mine = store.count_decisions(person.name, since=start)
    per_hour = None
    if start is not None:
        hours = max((datetime.now(UTC) - start).total_seconds() / 3600.0, 1.0 / 60.0)
        per_hour = mine / hours
    return ProgressOut(labeled=labeled, remaining=remaining, mine=mine, per_hour=per_hour)
