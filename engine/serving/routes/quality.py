"""Quality: consensus items, gold items, the reviewer queue, ``GET /reports/quality``.

Reviewers and admins only (the router's role); choosing consensus items is an
admin's. Nothing here is reachable with an annotator's token, so no answer an
annotator gets can tell a gold or consensus item from another.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from engine.quality import calibration, consensus
from engine.quality.report import ReportFilter, quality_report
from engine.serving.deps import PersonDep, StoreDep, require_role
from engine.serving.schemas.common import ErrorOut
from engine.serving.schemas.quality import (
    BatchOut,
    CalibrationIn,
    CalibrationOut,
    CalibrationReportOut,
    GoldIn,
    LabelOut,
    OverlapIn,
    OverlapOut,
    PersonLabelsOut,
    QualityItemOut,
    QualityReportOut,
    ResolveIn,
    ReviewCaseOut,
)
from engine.store import Batch, NotFoundError

router = APIRouter(tags=["quality"])
ItemId = Annotated[str, Path(min_length=1, max_length=128)]
BatchId = Annotated[str, Path(min_length=1, max_length=64)]
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "the item's state does not allow it"}
}


@router.post(
    "/quality/overlap",
    response_model=OverlapOut,
    summary="Put items under consensus (k distinct people each)",
    dependencies=[Depends(require_role("admin"))],
    responses={404: {"model": ErrorOut, "description": "no such item"}},
)
def put_overlap(body: OverlapIn, store: StoreDep) -> OverlapOut:
    ids = consensus.choose_overlap(
        store, k=body.k, fraction=body.fraction, item_ids=body.item_ids, seed=body.seed
    )
    return OverlapOut(item_ids=ids)


@router.post(
    "/quality/gold",
    response_model=QualityItemOut,
    status_code=201,
    summary="Make an item gold",
    description="Its labels are the given ones, or its reviewed labels as they stand. Gold "
    "items are mixed into every annotator's queue at ``gold_rate``, once per person.",
    responses={404: {"model": ErrorOut, "description": "no such item"}, **CONFLICT},
)
def put_gold(body: GoldIn, store: StoreDep, person: PersonDep) -> QualityItemOut:
    labels = None if body.labels is None else [lab.as_dict() for lab in body.labels]
    made = consensus.mark_gold(store, body.item_id, labels=labels, by=person.name)
    return QualityItemOut.of(made)


@router.get(
    "/quality/items/{item_id}",
    response_model=QualityItemOut,
    summary="A consensus or gold item's state and final labels",
    responses={404: {"model": ErrorOut, "description": "not a quality item"}},
)
def get_quality_item(item_id: ItemId, store: StoreDep) -> QualityItemOut:
    quality = store.quality_item(item_id)
    if quality is None:
        store.get_item(item_id)
        raise NotFoundError(f"item {item_id!r} is neither a consensus nor a gold item")
    return QualityItemOut.of(quality)


@router.get(
    "/quality/review",
    response_model=list[ReviewCaseOut],
    summary="Consensus items waiting for a reviewer, every decision side by side",
)
def review_queue(store: StoreDep) -> list[ReviewCaseOut]:
    return [
        ReviewCaseOut(
            item_id=case.item_id,
            k=case.k,
            decisions=[
                PersonLabelsOut(annotator=p, labels=[LabelOut.of(lab) for lab in labels])
                for p, labels in case.decisions.items()
            ],
            majority=case.majority,
        )
        for case in consensus.review_cases(store)
    ]


@router.post(
    "/quality/review/{item_id}",
    response_model=QualityItemOut,
    summary="Resolve a consensus item: pick one person's labels or give merged ones",
    responses={404: {"model": ErrorOut, "description": "no such item"}, **CONFLICT},
)
def resolve(item_id: ItemId, body: ResolveIn, store: StoreDep, person: PersonDep) -> QualityItemOut:
    labels = None if body.labels is None else [lab.as_dict() for lab in body.labels]
    done = consensus.resolve_by_reviewer(
        store, item_id, reviewer=person.name, pick=body.pick, labels=labels
    )
    return QualityItemOut.of(done)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.get(
    "/reports/quality",
    response_model=QualityReportOut,
    summary="Agreement, resolution, gold accuracy, people and model vs human",
)
def report(
    store: StoreDep,
    since: Annotated[datetime | None, Query(description="decisions from (UTC)")] = None,
    until: Annotated[datetime | None, Query(description="decisions before (UTC)")] = None,
    label: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    model_version: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    person: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> QualityReportOut:
    flt = ReportFilter(_utc(since), _utc(until), label, model_version, person)
    return QualityReportOut(**quality_report(store, flt))


def _batch_out(batch: Batch) -> BatchOut:
    return BatchOut(**asdict(batch))


@router.post(
    "/quality/batches",
    response_model=CalibrationOut,
    status_code=201,
    summary="Open a calibration batch every annotator labels first",
    description="A small diverse sample (k-center on stored embeddings, else stratified by "
    "predicted class) with full overlap; while it is open the queue serves nothing else.",
)
def open_calibration(body: CalibrationIn, store: StoreDep) -> CalibrationOut:
    drawn = calibration.draw_calibration(store, size=body.size, k=body.k, seed=body.seed)
    return CalibrationOut(
        **asdict(drawn.batch), item_ids=list(drawn.item_ids), k=drawn.k, method=drawn.method
    )


@router.get("/quality/batches", response_model=list[BatchOut], summary="Calibration batches")
def list_batches(store: StoreDep) -> list[BatchOut]:
    return [_batch_out(b) for b in store.batches()]


@router.get(
    "/quality/batches/{batch_id}/report",
    response_model=CalibrationReportOut,
    summary="Where a calibration batch disagrees: lowest items and classes first",
    responses={404: {"model": ErrorOut, "description": "no such batch"}},
)
def batch_report(batch_id: BatchId, store: StoreDep) -> CalibrationReportOut:
    return CalibrationReportOut(**calibration.calibration_report(store, batch_id))


@router.post(
    "/quality/batches/{batch_id}/close",
    response_model=BatchOut,
    summary="Close a calibration batch: regular work starts",
    responses={404: {"model": ErrorOut, "description": "no such batch"}, **CONFLICT},
)
def close_batch(batch_id: BatchId, store: StoreDep, person: PersonDep) -> BatchOut:
    return _batch_out(calibration.close_calibration(store, batch_id, by=person.name))
