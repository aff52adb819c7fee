"""The two Ray Data stages of a pre-label job, as plain functions and classes.

``decode_batch`` (CPU tasks) reads and decodes images; ``Predictor`` (one per
actor, holding the model) predicts and scores. Both take and return numpy
column batches. A bad item never raises: it becomes a row whose ``error``
column says why, and later stages pass it through untouched. Neither needs a
Ray cluster to run, so tests can call them directly.

Columns after decode: ``item_id``, ``uri``, ``image`` (HxWx3 uint8; 0x0x3 on
error), ``error`` ("" when fine). After predict: ``item_id``, ``error``,
``meta`` / ``probs`` / ``embedding`` (see ``engine.prelabel.codec``), ``score``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.prelabel.codec import encode_prediction
from engine.prelabel.scoring import item_score
from engine.types import Item, Prediction

Batch = dict[str, np.ndarray]
_NO_IMAGE = np.zeros((0, 0, 3), dtype=np.uint8)


def _objects(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array (``np.array`` would stack equal-shaped images into 4-D)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def decode_one(
    uri: str, roots: Sequence[Path], *, max_pixels: int, max_file_bytes: int
) -> np.ndarray:
    """Read ``uri`` under ``roots`` and decode it; raises on any problem."""
    from engine.imaging import decode_image
    from engine.paths import read_confined

    data = read_confined(uri, roots, max_bytes=max_file_bytes)
    return decode_image(data, max_pixels=max_pixels, source=uri)


def decode_batch(
    batch: Batch, *, roots: Sequence[str], max_pixels: int, max_file_bytes: int
) -> Batch:
    """Decode each row's image; a failure becomes that row's ``error``."""
    root_paths = [Path(r) for r in roots]
    images: list[np.ndarray] = []
    errors: list[str] = []
    for uri in batch["uri"]:
        try:
            image = decode_one(
                str(uri), root_paths, max_pixels=max_pixels, max_file_bytes=max_file_bytes
            )
        except Exception as exc:  # one bad item must not stop the job
            images.append(_NO_IMAGE)
            errors.append(describe_error(exc))
        else:
            images.append(image)
            errors.append("")
    return {
        "item_id": batch["item_id"],
        "uri": batch["uri"],
        "image": _objects(images),
        "error": _objects(errors),
    }


class Predictor:
    """Holds one model (built once per actor) and predicts column batches.

    Meant to own its process (a Ray actor): it sets ``OMP_WAIT_POLICY=PASSIVE``
    (unless already set) before importing torch.
    """

    def __init__(
        self,
        spec: dict[str, Any],
        models_dir: str,
        *,
        device: str = "auto",
        precision: str = "auto",
        torch_threads: int | None = None,
    ) -> None:
        from engine.config import ModelSpec
        from engine.models.registry import build_model

        # Before torch loads OpenMP: idle intra-op threads sleep instead of spinning,
        # so they do not steal the cores that decode tasks and other actors need
        # (measured on a busy 2-core box: spinning made an image cost 3-8x the CPU).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        self.model = build_model(
            ModelSpec.model_validate(spec), Path(models_dir), device=device, precision=precision
        )

    def __call__(self, batch: Batch) -> Batch:
        ids = [str(i) for i in batch["item_id"]]
        errors = [str(e) for e in batch["error"]]
        ok = [k for k, error in enumerate(errors) if not error]
        items = [Item(item_id=ids[k], kind="image", uri=str(batch["uri"][k])) for k in ok]
        images = [batch["image"][k] for k in ok]
        outcomes = self._predict(items, images)
        n = len(ids)
        metas, probs, embeddings = [""] * n, [b""] * n, [b""] * n
        scores = [0.0] * n
        for k, outcome in zip(ok, outcomes, strict=True):
            if isinstance(outcome, str):
                errors[k] = outcome
                continue
            metas[k], probs[k], embeddings[k] = encode_prediction(outcome)
            scores[k] = item_score(outcome)
        return {
            "item_id": _objects(ids),
            "error": _objects(errors),
            "meta": _objects(metas),
            "probs": _objects(probs),
            "embedding": _objects(embeddings),
            "score": np.asarray(scores, dtype=np.float64),
        }

    def _predict(self, items: list[Item], images: list[np.ndarray]) -> list[Prediction | str]:
        """Predict the batch; if it fails, retry item by item to isolate the bad one."""
        if not items:
            return []
        try:
            return list(self._checked(items, images))
        except Exception as exc:  # retried below, item by item
            if len(items) == 1:
                return [describe_error(exc)]
        outcomes: list[Prediction | str] = []
        for item, image in zip(items, images, strict=True):
            try:
                outcomes.extend(self._checked([item], [image]))
            except Exception as exc:  # this item only
                outcomes.append(describe_error(exc))
        return outcomes

    def _checked(self, items: list[Item], images: list[np.ndarray]) -> list[Prediction]:
        predictions = self.model.predict(items, images)
        got = [p.item_id for p in predictions]
        if got != [item.item_id for item in items]:
            raise RuntimeError(f"model returned predictions for {got}, not for the batch's items")
        return predictions
