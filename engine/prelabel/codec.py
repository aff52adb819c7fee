"""A ``Prediction`` as plain columns, to cross the Ray boundary cheaply and safely.

``encode_prediction`` gives a JSON string (names, suggestions, timings), the
raw float32 bytes of ``probs`` and the ``extras``: an ``.npz`` (no pickle) of
the ``embedding`` and the named ``signals``, empty without either; ``decode_prediction``
rebuilds an equal ``Prediction``. No pickled classes travel between processes,
so a driver and workers with different code versions fail loudly, not subtly.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.types import Prediction, Suggestion, region_from_dict

_EMPTY = b""
_EMBEDDING_KEY = "embedding__"  # cannot clash: signal names are identifiers without it
Batch = dict[str, np.ndarray]  # a column batch, as Ray Data hands them to the stages


def objects(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array (``np.array`` would stack equal-shaped images into 4-D)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _suggestion_dict(s: Suggestion, prediction: Prediction) -> dict[str, Any]:
    out = {
        "label": s.label,
        "score": s.score,
        "region": None if s.region is None else s.region.to_dict(),
        "attributes": dict(s.attributes),
        "parent_index": s.parent_index,
    }
    # Only spelled out when a suggestion's model differs from its prediction's.
    if (s.model_name, s.model_version) != (prediction.model_name, prediction.model_version):
        out["model_name"], out["model_version"] = s.model_name, s.model_version
    return out


def encode_prediction(prediction: Prediction) -> tuple[str, bytes, bytes]:
    """``(meta_json, probs_bytes, extras_bytes)``; empty extras without embedding or signals."""
    meta = {
        "item_id": prediction.item_id,
        "model_name": prediction.model_name,
        "model_version": prediction.model_version,
        "class_names": list(prediction.class_names),
        "n_classes": int(prediction.probs.shape[1]),
        "suggestions": [_suggestion_dict(s, prediction) for s in prediction.suggestions],
        "timings_ms": dict(prediction.timings_ms),
    }
    probs = np.ascontiguousarray(prediction.probs, dtype=np.float32).tobytes()
    return json.dumps(meta, default=_json_default), probs, _encode_extras(prediction)


def _encode_extras(prediction: Prediction) -> bytes:
    arrays = dict(prediction.signals)
    if prediction.embedding is not None:
        arrays[_EMBEDDING_KEY] = prediction.embedding
    if not arrays:
        return _EMPTY
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__} in a prediction")


def decode_prediction(meta_json: str, probs_bytes: bytes, extras_bytes: bytes) -> Prediction:
    """Inverse of ``encode_prediction``."""
    meta = json.loads(meta_json)
    name, version = meta["model_name"], meta["model_version"]
    suggestions = tuple(
        Suggestion(
            label=s["label"],
            score=s["score"],
            region=region_from_dict(s["region"]),
            model_name=s.get("model_name", name),
            model_version=s.get("model_version", version),
            attributes=s["attributes"],
            parent_index=s["parent_index"],
        )
        for s in meta["suggestions"]
    )
    probs = np.frombuffer(probs_bytes, dtype=np.float32)
    probs = probs.reshape(len(suggestions), meta["n_classes"])
    signals: dict[str, np.ndarray] = {}
    if extras_bytes:
        with np.load(io.BytesIO(extras_bytes), allow_pickle=False) as npz:
            signals = {key: npz[key] for key in npz.files}
    embedding = signals.pop(_EMBEDDING_KEY, None)
    return Prediction(
        item_id=meta["item_id"],
        model_name=name,
        model_version=version,
        suggestions=suggestions,
        probs=probs,
        class_names=tuple(meta["class_names"]),
        embedding=embedding,
        timings_ms=meta["timings_ms"],
        signals=signals,
    )
