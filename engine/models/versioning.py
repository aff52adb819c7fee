"""Model version strings: what the weights are plus how they are run.

A version changes when the weight bytes change or when any parameter that
changes outputs changes (input size, thresholds, class names), so a resumed
pre-label job redoes exactly the items whose predictions would differ.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.assets import sha256_file

if TYPE_CHECKING:
    from engine.config import ModelSpec

__all__ = ["config_hash", "model_version", "sha256_file", "spec_version"]

_HEX = frozenset(string.hexdigits.lower())


def config_hash(config: Mapping[str, Any]) -> str:
    """First 8 hex digits of the sha256 of ``config`` as canonical JSON (sorted keys)."""
    try:
        text = json.dumps(dict(config), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"model config must be JSON-serialisable with finite numbers: {exc}"
        ) from exc
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def model_version(weights_sha256: str, config: Mapping[str, Any]) -> str:
    """``<weights sha256[:12]>-<config hash[:8]>``, e.g. ``0ebbc80d4a7a-3f1c2b9e``."""
    digest = weights_sha256.lower()
    if len(digest) < 12 or not set(digest) <= _HEX:
        raise ValueError(f"weights_sha256 must be a hex digest, got {weights_sha256!r}")
    return f"{digest[:12]}-{config_hash(config)}"


def spec_version(spec: ModelSpec) -> str:
    """``<name>-<weights sha256[:12]>-<config hash>`` from the spec alone (the asset's
    recorded sha256, no file read); stable across machines."""
    weights = spec.asset.sha256[:12] if spec.asset is not None else "noweights"
    return f"{spec.name}-{weights}-{spec.config_hash()}"
