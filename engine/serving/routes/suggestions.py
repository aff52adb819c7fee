"""``GET /items/{item_id}/suggestions``: what a model proposed for an item."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from engine.serving.deps import StoreDep
from engine.serving.schemas.common import ErrorOut
from engine.serving.schemas.items import SuggestionOut

router = APIRouter(tags=["suggestions"])


@router.get(
    "/items/{item_id}/suggestions",
    response_model=list[SuggestionOut],
    summary="Suggestions for an item",
    description="The suggestions of the item's latest prediction (or of one model "
    "version), in prediction order, at or above a display threshold. An item without "
    "a prediction has an empty list.",
    responses={404: {"model": ErrorOut, "description": "no such item"}},
)
def list_suggestions(
    item_id: Annotated[str, Path(min_length=1, max_length=128)],
    store: StoreDep,
    min_score: Annotated[
        float, Query(ge=0.0, le=1.0, description="display threshold on the confidence")
    ] = 0.25,
    model_version: Annotated[
        str | None, Query(max_length=128, description="a model version; default: latest")
    ] = None,
) -> list[SuggestionOut]:
    records = store.suggestions_for(item_id, model_version=model_version, min_score=min_score)
    return [SuggestionOut.of(record) for record in records]
