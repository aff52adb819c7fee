"""Shared pieces of the HTTP bodies: strict inputs, bounded names and scores, errors, health."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Score = Annotated[float, Field(ge=0.0, le=1.0)]

Name = Annotated[str, Field(min_length=1, max_length=128)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong and what to do about it")


class FieldErrorOut(BaseModel):
    loc: list[str | int] = Field(description="where: body / query / path / header, then keys")
    msg: str
    type: str


class ValidationErrorOut(ErrorOut):
    errors: list[FieldErrorOut] = Field(description="each invalid field of the request")


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    version: str = Field(description="labelengine package version")
    schema_version: int | None = Field(description="database schema version")
    items: int | None = Field(description="number of items in the store")
    predictions: int | None = Field(description="number of stored predictions")
    detail: str | None = Field(default=None, description="why the store is unavailable")
