"""Where a token-classification checkpoint lives, and the hash that versions it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from engine.config import ModelSpec

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def local_checkpoint(checkpoint: str | Path) -> str:
    """A checkpoint directory as an absolute path, or a hub name (local cache only)."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.is_absolute() or str(checkpoint).startswith((".", "~")):
        raise ValueError(f"checkpoint directory {path} does not exist")
    return str(checkpoint)  # a hub name: only the local cache is consulted


def checkpoint_sha256(directory: Path) -> str:
    """sha256 over the sha256 of every weight file in ``directory`` (sorted by name)."""
    from engine.models.versioning import sha256_file

    files = sorted({p for pattern in WEIGHT_PATTERNS for p in directory.glob(pattern)})
    if not files:
        raise ValueError(f"no weight file ({', '.join(WEIGHT_PATTERNS)}) in {directory}")
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def resolve_checkpoint(spec: ModelSpec, models_dir: Path) -> Path:
    """The spec's ``checkpoint`` param: absolute, or relative to ``models_dir``."""
    raw = spec.params.get("checkpoint")
    if not raw:
        raise ValueError(f"model {spec.name!r}: params.checkpoint (a model directory) is required")
    path = Path(str(raw)).expanduser()
    path = path if path.is_absolute() else models_dir.expanduser() / path
    if not path.is_dir():
        raise ValueError(
            f"model {spec.name!r}: checkpoint directory {path} does not exist; "
            "train one first with `labelengine train ner` (engine.training.ner)"
        )
    return path.resolve()
