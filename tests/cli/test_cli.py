from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from engine.cli import app
from engine.config import load_settings
from engine.store import Store


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABELENGINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELENGINE_DATA_ROOTS", f'["{tmp_path}"]')
    return tmp_path


def test_ingest_then_calibrate_and_route_round_trip(env: Path) -> None:
    (env / "imgs").mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(env / "imgs" / f"{i}.png")
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", str(env / "imgs")])
    assert first.exit_code == 0, first.output
    assert "ingested 3 new" in first.output
    assert "0 new, 3 already present" in runner.invoke(app, ["ingest", "imgs"]).output
    outside = runner.invoke(app, ["ingest", "/etc"])
    assert outside.exit_code != 0
    calibrated = runner.invoke(app, ["calibrate", "--min-count", "1", "--write", "t.yaml"])
    assert calibrated.exit_code == 0, calibrated.output
    routed = runner.invoke(app, ["route", "t.yaml"])
    assert "machine-accepted 0 suggestions" in routed.output
    (env / "bad.yaml").write_text("defualt: 0.9\n")
    assert runner.invoke(app, ["route", "bad.yaml"]).exit_code == 2
    settings = load_settings()
    assert Store(settings.resolved_database_url).count_items() == 3


def test_models_list_shows_every_configured_model() -> None:
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    for name in ("yolo11n", "litemedsam"):
        assert name in result.output
