"""People: a name, a role and the sha256 of their token (the token is never stored)."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from engine.store import schema as t
from engine.store.base import StoreCore, now_utc
from engine.store.records import UserRecord, user_of

_USER = t.users.c


class UserQueries(StoreCore):
    def add_user(self, name: str, role: str, token_sha256: str) -> UserRecord:
        """A new person, or a revoked one back with a new token and role.

        ``ValueError`` when an active person of that name exists (revoke first).
        """
        with self.engine.begin() as conn:
            row = conn.execute(select(t.users).where(_USER.name == name)).first()
            if row is not None and row.revoked_at is None:
                raise ValueError(f"user {name!r} exists; revoke them first to issue a new token")
            values = {"role": role, "token_sha256": token_sha256, "created_at": now_utc()}
            if row is None:
                conn.execute(insert(t.users).values(name=name, **values))
            else:
                conn.execute(
                    update(t.users).where(_USER.name == name).values(revoked_at=None, **values)
                )
            return user_of(conn.execute(select(t.users).where(_USER.name == name)).one())

    def get_user(self, name: str) -> UserRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.users).where(_USER.name == name)).first()
        return None if row is None else user_of(row)

    def user_for_token(self, token_sha256: str) -> UserRecord | None:
        """The active person whose token hashes to ``token_sha256``; ``None`` otherwise."""
        query = select(t.users).where(
            _USER.token_sha256 == token_sha256, _USER.revoked_at.is_(None)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else user_of(row)

    def list_users(self) -> list[UserRecord]:
        with self.engine.connect() as conn:
            return [user_of(row) for row in conn.execute(select(t.users).order_by(_USER.name))]

    def revoke_user(self, name: str) -> bool:
        """Invalidate a person's token; whether an active person of that name existed."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(t.users)
                .where(_USER.name == name, _USER.revoked_at.is_(None))
                .values(revoked_at=now_utc())
            ).rowcount
        return bool(changed == 1)
