"""``GET /items/{item_id}/suggestions``: what a model proposed; ``/labels``: its label set."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from engine.review.explain import explain_item
from engine.review.ranking import current_policy
from engine.serving.deps import SettingsDep, StoreDep
from engine.serving.schemas.common import ErrorOut
from engine.serving.schemas.items import SuggestionOut
from engine.serving.schemas.ranking import ItemRankingOut

router = APIRouter(tags=["suggestions"])


@router.get(
    "/items/{item_id}/suggestions",
    response_model=list[SuggestionOut],
    summary="Suggestions for an item",
    description="The suggestions of the item's latest prediction (or of one model "
    "version), in prediction order, at or above a display threshold. An item without "
    "a prediction has an empty list. Each carries its uncertainty under the queue's "
    "policy and its top-5 classes with probabilities (the row kept before any threshold).",
    responses={404: {"model": ErrorOut, "description": "no such item"}},
)
def list_suggestions(
    item_id: Annotated[str, Path(min_length=1, max_length=128)],
    store: StoreDep,
    settings: SettingsDep,
    min_score: Annotated[
        float, Query(ge=0.0, le=1.0, description="display threshold on the confidence")
    ] = 0.25,
    model_version: Annotated[
        str | None, Query(max_length=128, description="a model version; default: latest")
    ] = None,
) -> list[SuggestionOut]:
    records = store.suggestions_for(item_id, model_version=model_version, min_score=min_score)
    policy = current_policy(store, settings.rank_policy)
    why = explain_item(store, item_id, policy, with_rank=False)
    regions = {r.position: r for r in why.regions} if records else {}
    same = bool(records) and records[0].prediction_id == why.prediction_id
    return [
        SuggestionOut.of(record, regions.get(record.position) if same else None)
        for record in records
    ]


@router.get(
    "/items/{item_id}/ranking",
    response_model=ItemRankingOut,
    summary="Why the item is ranked where it is",
    description="Recomputed from the stored prediction under the queue's current policy: "
    "each region's uncertainty and top-5 classes, stochastic-pass signals, the item's "
    "uncertainty, its queue score and its rank.",
    responses={404: {"model": ErrorOut, "description": "no such item"}},
)
def item_ranking(
    item_id: Annotated[str, Path(min_length=1, max_length=128)],
    store: StoreDep,
    settings: SettingsDep,
) -> ItemRankingOut:
    policy = current_policy(store, settings.rank_policy)
    return ItemRankingOut.of(explain_item(store, item_id, policy))


class LabelSetOut(BaseModel):
    labels: list[str] = Field(description="labels an editor may pick, in the model's order")


@router.get(
    "/items/{item_id}/labels",
    response_model=LabelSetOut,
    summary="The labels an editor may give this item",
    description="The class names of the item's latest prediction; for a token tagger the "
    "entity types behind its B-/I- tags. Empty when the item has no prediction.",
    responses={404: {"model": ErrorOut, "description": "no such item"}},
)
def label_set(
    item_id: Annotated[str, Path(min_length=1, max_length=128)], store: StoreDep
) -> LabelSetOut:
    store.get_item(item_id)
    return LabelSetOut(labels=entity_labels(store.class_names(item_id)))


def entity_labels(names: list[str]) -> list[str]:
    """Class names as labels: ``O`` dropped, ``B-PER`` / ``I-PER`` / ``S-PER`` -> ``PER``."""
    out: list[str] = []
    for name in names:
        if name == "O":
            continue
        label = name[2:] if len(name) > 2 and name[1] == "-" and name[0] in "BIESLU" else name
        if label not in out:
            out.append(label)
    return out
