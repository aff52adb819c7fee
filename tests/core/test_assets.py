from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine.assets import AssetError, asset_status, pull, resolve
from engine.config import REPO_CONFIG_DIR, ModelSpec, load_settings, model_specs


def _local_spec(tmp_path: Path, payload: bytes) -> ModelSpec:
    source = tmp_path / "upstream.bin"
    source.write_bytes(payload)
    return ModelSpec.model_validate(
        {
            "name": "toy",
            "family": "yolo",
            "asset": {
                "filename": "toy.pt",
                "sha256": hashlib.sha256(payload).hexdigest(),
                "size_bytes": len(payload),
                "sources": [{"path": str(source)}],
            },
        }
    )


def test_missing_weights_name_the_command_to_run(tmp_path: Path) -> None:
    spec = _local_spec(tmp_path, b"weights")
    with pytest.raises(AssetError, match="labelengine models pull toy"):
        resolve(tmp_path / "models", spec)


def test_pull_verifies_and_resolve_detects_corruption(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    spec = _local_spec(tmp_path, b"weights-v1")
    path = pull(models_dir, spec)
    assert resolve(models_dir, spec) == path
    assert asset_status(models_dir, spec, verify=True).state == "present"
    path.write_bytes(b"weights-v2")  # same size, other content
    with pytest.raises(AssetError, match="do not match"):
        resolve(models_dir, spec)
    assert asset_status(models_dir, spec, verify=True).state == "corrupt"


def test_pull_refuses_a_source_with_the_wrong_checksum(tmp_path: Path) -> None:
    spec = _local_spec(tmp_path, b"weights")
    (tmp_path / "upstream.bin").write_bytes(b"tampered")
    with pytest.raises(AssetError, match="sha256"):
        pull(tmp_path / "models", spec)
    assert not (tmp_path / "models" / "toy" / "toy.pt").exists()


@pytest.mark.slow
def test_bundled_detector_weights_are_present_and_verified() -> None:
    settings = load_settings()
    spec = model_specs(REPO_CONFIG_DIR)["yolo11n"]
    path = resolve(settings.resolved_models_dir, spec)
    assert path.stat().st_size == spec.asset.size_bytes  # type: ignore[union-attr]
