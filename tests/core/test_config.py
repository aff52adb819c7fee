from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import REPO_CONFIG_DIR, ConfigError, load_model_spec, load_settings, model_specs


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("port: 9000\nprot: 1\n")
    with pytest.raises(ConfigError, match=r"server\.yaml.*'prot'"):
        load_settings(path)


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("port: not-a-number\n")
    with pytest.raises(ConfigError, match=r"server\.yaml.*key 'port'"):
        load_settings(path)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("port: 9000\nhost: 0.0.0.0\n")
    monkeypatch.setenv("LABELENGINE_PORT", "9100")
    settings = load_settings(path)
    assert settings.port == 9100
    assert settings.host == "0.0.0.0"
    assert load_settings(path, port=9200).port == 9200


def test_bundled_model_specs_are_valid() -> None:
    specs = model_specs(REPO_CONFIG_DIR)
    assert {"yolo11n", "litemedsam"} <= set(specs)
    assert specs["yolo11n"].asset is not None
    assert specs["yolo11n"].params["conf_floor"] <= 0.05


def test_model_spec_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: x\nfamily: yolo\nasset:\n  filename: a.pt\n  sha256: nothex\n"
        "  size_bytes: 1\n  sources: [{url: 'https://x/a.pt'}]\n"
    )
    with pytest.raises(ConfigError, match=r"bad\.yaml.*asset\.sha256"):
        load_model_spec(path)
    path.write_text("name: x\nfamily: yolo\nparms: {}\n")
    with pytest.raises(ConfigError, match="unknown key 'parms'"):
        load_model_spec(path)


def test_generated_token_is_stable_per_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    first = settings.token()
    assert len(first) > 20
    assert load_settings(data_dir=tmp_path).token() == first
