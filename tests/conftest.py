"""Shared fixtures: settings and a real SQLite store in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config import REPO_CONFIG_DIR, Settings, load_settings
from engine.store import Store


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path],
        config_dir=REPO_CONFIG_DIR,
        api_token="test-token",
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.resolved_database_url)
    yield store
    store.close()
