"""The store's foundation: the SQLAlchemy engine, the schema check, shared helpers.

SQLite (WAL) by default, PostgreSQL by URL. ``StoreCore`` owns the connection
pool and the schema version; the query mixins beside it (``items``,
``predictions``, ``feedback``, ``jobs``, ``queue``, ``routing``, ``labels``)
add one concern each, and ``engine.store.Store`` is all of them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from engine.store import schema as t


class StoreError(RuntimeError):
    """The database cannot be used (newer schema, bad URL...)."""


class StoreUnavailableError(StoreError):
    """The database does not answer (down, locked, unreadable)."""


class NotFoundError(LookupError):
    """An item, suggestion or job does not exist."""


def now_utc() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40)


@dataclass(frozen=True)
class StoreHealth:
    schema_version: int
    items: int
    predictions: int


class StoreCore:
    """The connection pool and schema; thread-safe: each call uses its own connection."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine = make_engine(url)
        self._migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def _migrate(self) -> None:
        t.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            row = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "schema_version"))
            found = row.scalar_one_or_none()
            if found is None:
                self._insert_ignore(conn, t.meta, [{"key": "schema_version", "value": "1"}])
                return
            if int(found) > t.SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.engine.url.render_as_string(hide_password=True)} has schema "
                    f"version {found}, newer than this engine supports ({t.SCHEMA_VERSION}); "
                    "upgrade labelengine or point LABELENGINE_DATABASE_URL elsewhere"
                )

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "schema_version"))
            return int(value.scalar_one())

    def health(self) -> StoreHealth:
        """Schema version and row counts; ``StoreUnavailableError`` when the database fails."""
        try:
            with self.engine.connect() as conn:
                version = conn.execute(
                    select(t.meta.c.value).where(t.meta.c.key == "schema_version")
                ).scalar_one()
                n_items = conn.execute(select(func.count()).select_from(t.items)).scalar_one()
                n_predictions = conn.execute(
                    select(func.count()).select_from(t.predictions)
                ).scalar_one()
        except SQLAlchemyError as exc:
            raise StoreUnavailableError(
                f"the database cannot be read ({type(exc).__name__})"
            ) from exc
        return StoreHealth(int(version), int(n_items), int(n_predictions))

    def _insert_ignore(self, conn: Any, table: Any, rows: list[dict[str, Any]]) -> int:
        """Insert rows, skipping those whose key exists; returns how many were new.

        Counted from ``RETURNING``: a many-row insert's ``rowcount`` is -1 on
        PostgreSQL (psycopg), which ``ingest`` then printed as "-1 new".
        """
        if not rows:
            return 0
        dialect = sqlite if self.dialect == "sqlite" else postgresql
        key = list(table.primary_key.columns)
        stmt = dialect.insert(table).on_conflict_do_nothing().returning(*key)
        return len(conn.execute(stmt, rows).all())
