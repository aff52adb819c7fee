"""Who is who: people with roles, their tokens, and what each role may do.

Roles, each including the one before:

- ``annotator``: lease items, judge suggestions, click-to-segment;
- ``reviewer``: + see every person's decisions and overrule them (a reviewer's
  decision is not held back by someone else's lease), reports;
- ``admin``: + jobs, people, exports.

A person's token is 256 random bits (``secrets.token_urlsafe(32)``), shown once
when the person is added and stored only as its sha256 (``Store.add_user``):
a token is a key, not a password, so a fast hash is enough and lets the
server find the person in one indexed read.

The service token (``settings.api_token``) is the admin token of integrations
(scripts, Label Studio, a gateway): a request with it acts as the person named
in ``X-Annotator`` when given (the gateway speaking for its users), else as
``anonymous``. For anyone else the person comes from the token alone.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

from engine.store import Store, UserRecord

Role = Literal["annotator", "reviewer", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
SERVICE = "anonymous"  # the service token without X-Annotator
TOKEN_PREFIX = "le_"
_RANK = {role: rank for rank, role in enumerate(ROLES)}
MAX_NAME_CHARS = 128


@dataclass(frozen=True)
class Person:
    """Who a request acts for: a name, a role, and whether it came with the service token."""

    name: str
    role: str
    service: bool = False

    def may(self, role: str) -> bool:
        """Whether this person's role includes ``role``."""
        return _RANK[self.role] >= _RANK[role]


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role  # type: ignore[return-value]


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME_CHARS:
        raise ValueError(f"a person's name must be 1 to {MAX_NAME_CHARS} characters")
    if cleaned == SERVICE or cleaned.startswith("labelstudio:"):
        raise ValueError(f"{cleaned!r} is reserved for integrations; pick another name")
    return cleaned


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_person(store: Store, name: str, role: str) -> tuple[UserRecord, str]:
    """Add a person (or give a revoked one a new token); returns the record and the token,
    which is not kept anywhere and cannot be shown again."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = store.add_user(check_name(name), check_role(role), token_sha256(token))
    return record, token


def reissue_person(store: Store, name: str, role: str) -> tuple[UserRecord, str]:
    """A new token for ``name`` (revoking the old one): the demo's admin on every run."""
    store.revoke_user(check_name(name))
    return add_person(store, name, role)


def person_for_token(
    store: Store, token: str, service_token: str, acting_for: str | None = None
) -> Person | None:
    """The person a bearer token stands for; ``None`` for an unknown or revoked token."""
    if secrets.compare_digest(token.encode("utf-8"), service_token.encode("utf-8")):
        name = (acting_for or "").strip()
        return Person(name[:MAX_NAME_CHARS] or SERVICE, "admin", service=True)
    record = store.user_for_token(token_sha256(token))
    return None if record is None else Person(record.name, record.role)
