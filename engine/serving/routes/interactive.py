"""``POST /interactive/segment``: a click (or box) in, a mask out, decoder only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from engine.segment.service import SegmentRequest
from engine.serving.deps import PersonDep, SegmenterDep, StoreDep
from engine.serving.schemas.common import ErrorOut
from engine.serving.schemas.interactive import SegmentIn, SegmentMaskOut, SegmentOut

router = APIRouter(prefix="/interactive", tags=["interactive"])


@router.post(
    "/segment",
    response_model=SegmentOut,
    summary="Segment from a click or a box",
    description="Points (``points_xy`` + ``point_labels``) and / or a ``box_xyxy`` in image "
    "pixels. The image is encoded once per model version and cached; later clicks run only "
    "the mask decoder (``encode_ms`` is null then). A box-trained model turns a click into "
    "a box: the smallest stored detector box around it, else a square around the click; "
    "``prompt`` says which. Refine a mask by adding clicks and passing its ``mask_id`` as "
    "``previous_mask_id`` (or the mask itself as ``mask_input_rle``).",
    responses={
        404: {"model": ErrorOut, "description": "no such item, or previous_mask_id forgotten"},
        409: {"model": ErrorOut, "description": "an annotator's click on someone else's lease"},
        422: {
            "model": ErrorOut,
            "description": "empty or out-of-bounds prompt, mask_input_rle of the wrong size",
        },
    },
)
def segment(
    body: SegmentIn, store: StoreDep, segmenter: SegmenterDep, person: PersonDep
) -> SegmentOut:
    if body.points_xy is None and body.box_xyxy is None:
        raise ValueError("give points_xy (with point_labels) or box_xyxy: the prompt is empty")
    result = segmenter.segment(
        store,
        SegmentRequest(
            item_id=body.item_id,
            respect_leases_of=None if person.may("reviewer") else person.name,
            points_xy=body.points_xy,
            point_labels=body.point_labels,
            box_xyxy=body.box_xyxy,
            multimask=body.multimask,
            previous_mask_id=body.previous_mask_id,
            mask_input_rle=(
                (body.mask_input_rle.size, body.mask_input_rle.counts)
                if body.mask_input_rle is not None
                else None
            ),
        ),
    )
    from engine.imaging.geometry import mask_polygons_xy

    masks = []
    for mask, mask_id in zip(result.masks, result.mask_ids, strict=True):
        region = mask.to_region()
        masks.append(
            SegmentMaskOut(
                mask_id=mask_id,
                mask_rle=region.mask_rle,
                size_hw=(region.height_px, region.width_px),
                box_xyxy=region.box.box_xyxy,
                polygons_xy=[
                    [(float(x), float(y)) for x, y in poly]
                    for poly in mask_polygons_xy(mask.mask, simplify_px=1.0)
                ],
                area_px=mask.area_px,
                predicted_iou=mask.predicted_iou,
                stability_score=mask.stability_score,
                multimask_disagreement=mask.multimask_disagreement,
            )
        )
    first = result.masks[0]
    return SegmentOut(
        item_id=body.item_id,
        model_version=result.model_version,
        prompt=first.prompt,
        prompt_box_xyxy=first.prompt_box_xyxy,
        masks=masks,
        encode_ms=result.encode_ms,
        decode_ms=result.decode_ms,
    )


@router.get(
    "/stats",
    summary="Segmenter cache, prefetch and mask-memory counters",
    description="Embedding cache ``hits`` / ``disk_hits`` / ``misses`` / ``bytes``..., "
    "``encoder_calls``, the shared ``embedding_dir``; ``prefetch``: requests, items "
    "``encoded`` / ``cached``, ``errors``, ``dropped``; ``masks``: the refinement memory.",
)
def stats(segmenter: SegmenterDep) -> dict[str, Any]:
    return segmenter.stats()
