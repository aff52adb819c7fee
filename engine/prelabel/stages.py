"""The two stages of a pre-label job, as plain functions and classes.

``decode_batch`` (CPU tasks) reads and decodes images; ``Predictor`` (one per
actor, holding the model) predicts and scores. Both take and return numpy
column batches. A bad item never raises: it becomes a row whose ``error``
column says why, and later stages pass it through untouched. Neither needs a
Ray cluster: the Ray Data pipeline (``pipeline``) and the in-process executor
(``local``) run these same stages, and tests call them directly.

Columns after decode: ``item_id``, ``uri``, ``key``, ``image`` (HxWx3 uint8;
0x0x3 on error), ``error`` ("" when fine); text items are decoded by
``engine.prelabel.text.decode_text_batch`` (``item_id``, ``text``, ``error``).
After predict: ``item_id``, ``error``,
``meta`` / ``probs`` / ``embedding`` (see ``engine.prelabel.codec``), ``score``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.prelabel.codec import Batch, encode_prediction, objects
from engine.prelabel.runner import describe_error
from engine.prelabel.text import decode_text_batch
from engine.review.scoring import queue_score
from engine.types import Item, Prediction

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.models.base import Model
    from engine.prelabel.config import PrelabelConfig
    from engine.prelabel.plan import ModelPlan

_NO_IMAGE = np.zeros((0, 0, 3), dtype=np.uint8)


def decode_one(
    uri: str, roots: Sequence[Path], *, max_pixels: int, max_file_bytes: int
) -> np.ndarray:
    """Read ``uri`` under ``roots`` and decode it; raises on any problem."""
    from engine.imaging.decode import decode_image
    from engine.paths import read_confined

    data = read_confined(uri, roots, max_bytes=max_file_bytes)
    return decode_image(data, max_pixels=max_pixels, source=uri)


def decode_batch(
    batch: Batch, *, roots: Sequence[str], max_pixels: int, max_file_bytes: int
) -> Batch:
    """Decode each row's image; a failure becomes that row's ``error``.

    Other input columns (``item_id``, ``uri``, ``key``...) pass through.
    """
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
    return {**batch, "image": objects(images), "error": objects(errors)}


class Predictor:
    """Holds one model (built once per actor) and predicts column batches.

    ``kind`` says what rows hold: ``image`` (``image`` column, optional
    ``key``) or ``text`` (``text`` column). With ``segmenter_spec`` the model
    is a ``ChainedModel`` (detector boxes -> masks). ``expected_version`` is
    the version the job recorded: a model that builds with another version
    (weights or pipeline changed since the job was created) is refused, so a
    job never mixes versions. Predictions are scored here by
    ``engine.review.scoring.queue_score``, while a tagger's per-word rows
    still exist (they are not stored).

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
        kind: str = "image",
        segmenter_spec: dict[str, Any] | None = None,
        mask_min_box_score: float = 0.25,
        mask_multimask: bool | None = None,
        expected_version: str | None = None,
    ) -> None:
        # Before torch loads OpenMP: idle intra-op threads sleep instead of spinning,
        # so they do not steal the cores that decode tasks and other actors need
        # (measured on a busy 2-core box: spinning made an image cost 3-8x the CPU).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        if kind not in ("image", "text"):
            raise ValueError(f"kind must be 'image' or 'text', got {kind!r}")
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        self.kind = kind
        self.model = _build(
            spec,
            Path(models_dir),
            device,
            precision,
            segmenter_spec,
            mask_min_box_score=mask_min_box_score,
            mask_multimask=mask_multimask,
        )
        if expected_version is not None and self.model.version != expected_version:
            raise RuntimeError(
                f"model {self.model.name!r} now has version {self.model.version!r}, but the "
                f"job was created for {expected_version!r} (its weights, checkpoint or "
                "pipeline changed since); start a new job"
            )

    def __call__(self, batch: Batch) -> Batch:
        ids = [str(i) for i in batch["item_id"]]
        errors = [str(e) for e in batch["error"]]
        ok = [k for k, error in enumerate(errors) if not error]
        items, inputs = self._inputs(batch, ids, ok)
        outcomes = self._predict(items, inputs)
        n = len(ids)
        metas, probs, extras = [""] * n, [b""] * n, [b""] * n
        scores = [0.0] * n
        for k, outcome in zip(ok, outcomes, strict=True):
            if isinstance(outcome, str):
                errors[k] = outcome
                continue
            metas[k], probs[k], extras[k] = encode_prediction(outcome)
            scores[k] = self.score(outcome)
        return {
            "item_id": objects(ids),
            "error": objects(errors),
            "meta": objects(metas),
            "probs": objects(probs),
            "extras": objects(extras),
            "score": np.asarray(scores, dtype=np.float64),
        }

    def score(self, prediction: Prediction) -> float:
        """The item's queue score (see the class doc for the policy per kind)."""
        return queue_score(prediction, self.kind)

    def _inputs(self, batch: Batch, ids: list[str], ok: list[int]) -> tuple[list[Item], list[Any]]:
        if self.kind == "text":
            texts = [str(batch["text"][k]) for k in ok]
            items = [Item(ids[k], "text", text=text) for k, text in zip(ok, texts, strict=True)]
            return items, list(texts)
        keys = batch.get("key")
        items = [
            Item(
                ids[k],
                "image",
                uri=str(batch["uri"][k]),
                metadata={"key": str(keys[k])} if keys is not None else {},
            )
            for k in ok
        ]
        return items, [batch["image"][k] for k in ok]

    def _predict(self, items: list[Item], inputs: list[Any]) -> list[Prediction | str]:
        """Predict the batch; if it fails, retry item by item to isolate the bad one."""
        if not items:
            return []
        try:
            return list(self._checked(items, inputs))
        except Exception as exc:  # retried below, item by item
            if len(items) == 1:
                return [describe_error(exc)]
        outcomes: list[Prediction | str] = []
        for item, given in zip(items, inputs, strict=True):
            try:
                outcomes.extend(self._checked([item], [given]))
            except Exception as exc:  # this item only
                outcomes.append(describe_error(exc))
        return outcomes

    def _checked(self, items: list[Item], inputs: list[Any]) -> list[Prediction]:
        predictions = self.model.predict(items, inputs)
        got = [p.item_id for p in predictions]
        if got != [item.item_id for item in items]:
            raise RuntimeError(f"model returned predictions for {got}, not for the batch's items")
        return predictions


def _build(
    spec: dict[str, Any],
    models_dir: Path,
    device: str,
    precision: str,
    segmenter_spec: dict[str, Any] | None,
    *,
    mask_min_box_score: float,
    mask_multimask: bool | None,
) -> Model:
    """The job's model: the spec's, or the spec's detector chained with the segmenter."""
    from engine.config import ModelSpec
    from engine.models.registry import build_model

    model = build_model(
        ModelSpec.model_validate(spec), models_dir, device=device, precision=precision
    )
    if segmenter_spec is None:
        return model
    from engine.models.chain import ChainedModel, chained_version
    from engine.models.sam.segmenter import SamSegmenter

    segmenter = build_model(
        ModelSpec.model_validate(segmenter_spec), models_dir, device=device, precision=precision
    )
    if not isinstance(segmenter, SamSegmenter):
        raise ValueError(f"segmenter {segmenter.name!r} is not a SamSegmenter")
    version = chained_version(model.version, segmenter.version, mask_min_box_score, mask_multimask)
    return ChainedModel(
        model,
        segmenter,
        version=version,
        min_box_score=mask_min_box_score,
        multimask=mask_multimask,
    )


def decode_stage(kind: str, settings: Settings, config: PrelabelConfig) -> Callable[[Batch], Batch]:
    """The decode function for ``kind`` items, bound to the job's limits (both executors)."""
    roots = [str(r) for r in settings.resolved_data_roots]
    if kind == "text":
        return functools.partial(
            decode_text_batch,
            roots=roots,
            max_text_chars=config.max_text_chars,
            max_file_bytes=config.max_file_bytes,
        )
    return functools.partial(
        decode_batch,
        roots=roots,
        max_pixels=config.resolved_max_pixels(settings),
        max_file_bytes=config.max_file_bytes,
    )


def predictor_kwargs(
    settings: Settings, config: PrelabelConfig, plan: ModelPlan, torch_threads: int | None
) -> dict[str, Any]:
    """``Predictor``'s arguments for a job's model plan (plain values: they cross to Ray)."""
    return {
        "spec": plan.spec.model_dump(mode="json"),
        "models_dir": str(settings.resolved_models_dir),
        "device": config.device,
        "precision": config.precision,
        "torch_threads": torch_threads,
        "kind": plan.kind,
        "segmenter_spec": None
        if plan.segmenter is None
        else plan.segmenter.model_dump(mode="json"),
        "mask_min_box_score": plan.mask_min_box_score,
        "mask_multimask": plan.mask_multimask,
        "expected_version": plan.job_version,
    }
