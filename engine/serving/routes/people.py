"""People: who am I (``/me``), and for admins the accounts (``/users``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from engine.review.people import ROLES, Role, add_person
from engine.serving.deps import PersonDep, StoreDep, require_role
from engine.serving.schemas.common import ErrorOut, _In
from engine.store import NotFoundError, UserRecord

router = APIRouter(tags=["people"])
admin = [Depends(require_role("admin"))]


class MeOut(BaseModel):
    name: str
    role: str = Field(description=f"one of {', '.join(ROLES)}")
    service: bool = Field(description="true for the service token (acting via X-Annotator)")


class UserIn(_In):
    name: str = Field(min_length=1, max_length=128)
    role: Role = "annotator"


class UserOut(BaseModel):
    name: str
    role: str
    created_at: datetime
    active: bool

    @classmethod
    def of(cls, record: UserRecord) -> UserOut:
        return cls(
            name=record.name, role=record.role, created_at=record.created_at, active=record.active
        )


class NewUserOut(UserOut):
    token: str = Field(description="the person's bearer token; shown once, stored only hashed")


@router.get("/me", response_model=MeOut, summary="Who the token acts for")
def me(person: PersonDep) -> MeOut:
    return MeOut(name=person.name, role=person.role, service=person.service)


@router.get("/users", response_model=list[UserOut], summary="People", dependencies=admin)
def list_users(store: StoreDep) -> list[UserOut]:
    return [UserOut.of(record) for record in store.list_users()]


@router.post(
    "/users",
    response_model=NewUserOut,
    status_code=201,
    summary="Add a person (or re-issue a revoked one) and show their token once",
    dependencies=admin,
    responses={422: {"model": ErrorOut, "description": "bad name or role, or name taken"}},
)
def add_user(body: UserIn, store: StoreDep) -> NewUserOut:
    record, token = add_person(store, body.name, body.role)
    return NewUserOut(**UserOut.of(record).model_dump(), token=token)


@router.delete(
    "/users/{name}",
    response_model=UserOut,
    summary="Revoke a person's token",
    dependencies=admin,
    responses={404: {"model": ErrorOut, "description": "no active person of that name"}},
)
def revoke_user(
    name: Annotated[str, Path(min_length=1, max_length=128)], store: StoreDep
) -> UserOut:
    if not store.revoke_user(name):
        raise NotFoundError(f"no active person named {name!r}")
    record = store.get_user(name)
    if record is None:  # revoked a moment ago; cannot vanish, rows are never deleted
        raise NotFoundError(f"no person named {name!r}")
    return UserOut.of(record)
