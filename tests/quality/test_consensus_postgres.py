"""The consensus guarantees on a real PostgreSQL server (``pg_store``, pgserver)."""

from __future__ import annotations

import pytest
from test_consensus import check_concurrent_consensus

from engine.store import Store

pytestmark = [pytest.mark.postgres, pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR")]


def test_concurrent_people_on_postgres(pg_store: Store) -> None:
    check_concurrent_consensus(pg_store)
