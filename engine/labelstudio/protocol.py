"""Bodies of Label Studio's ML-backend protocol (as Label Studio 1.23 sends and reads them).

Requests accept unknown fields (Label Studio adds some between versions);
responses hold exactly what Label Studio reads. Coordinates inside ``result``
regions are percent of ``original_width`` / ``original_height``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_TASKS = 10_000


class _LsIn(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class LsTaskIn(_LsIn):
    """One task: Label Studio's id and its ``data`` (``{"image": "/data/upload/..."}``)."""

    id: int | str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class LsContextIn(_LsIn):
    """Interactive mode: the regions the annotator just drew (keypoints, rectangles)."""

    result: list[dict[str, Any]] = Field(default_factory=list)


class LsParamsIn(_LsIn):
    context: LsContextIn | None = None


class LsPredictIn(_LsIn):
    tasks: list[LsTaskIn] = Field(max_length=MAX_TASKS)
    label_config: str | None = Field(
        default=None, description="the project's labeling config XML; defaults to /setup's"
    )
    project: str | int | None = Field(default=None, description='"<id>.<created timestamp>"')
    params: LsParamsIn | None = None


class LsSetupIn(_LsIn):
    project: str | int | None = None
    label_schema: str | None = Field(
        default=None, alias="schema", description="the project's labeling config XML"
    )
    hostname: str | None = Field(default=None, description="Label Studio's public URL")
    access_token: str | None = Field(
        default=None, description="the project owner's API token (fetches /data/... media)"
    )
    model_version: str | None = None


class LsSetupOut(BaseModel):
    model_version: str = Field(description="what every prediction for this project carries")


class LsPredictionOut(BaseModel):
    result: list[dict[str, Any]] = Field(description="Label Studio regions; [] when none")
    score: float = Field(description="the item's uncertainty score: higher = label first")
    model_version: str


class LsPredictOut(BaseModel):
    results: list[LsPredictionOut] = Field(description="exactly one per task, in task order")


class LsVersionsOut(BaseModel):
    versions: list[str]
