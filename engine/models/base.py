"""The model protocol and the base class every adapter builds on.

An adapter writes ``preprocess``, ``forward`` and ``postprocess``; the base
class owns ``torch.inference_mode()``, the device, the dtype and per-stage
timings. The same object runs in a unit test, a Ray actor and the server.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from engine.types import Item, Prediction

if TYPE_CHECKING:
    import torch


@runtime_checkable
class Model(Protocol):
    """What every model offers: a name, a version and batched prediction."""

    name: str
    version: str

    def predict(
        self, items: Sequence[Item], inputs: Sequence[Any] | None = None
    ) -> list[Prediction]:
        """One ``Prediction`` per item, in order.

        ``inputs`` are already-decoded inputs (e.g. HxWx3 uint8 arrays) aligned
        with ``items``; when omitted the model decodes the items itself.
        """
        ...


def pick_device(requested: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else passes through."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available")
    return requested


def pick_dtype(device: str, precision: str = "auto") -> torch.dtype:
    """``auto`` -> bf16 on CUDA devices that support it (else fp16), fp32 on CPU."""
    import torch

    names = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision in names:
        return names[precision]
    if precision != "auto":
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, got {precision!r}")
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class Stopwatch:
    """Collects per-stage wall-clock times in milliseconds."""

    def __init__(self) -> None:
        self.timings_ms: dict[str, float] = {}

    def stage(self, name: str) -> _Stage:
        return _Stage(self, name)


class _Stage:
    def __init__(self, watch: Stopwatch, name: str) -> None:
        self._watch = watch
        self._name = name
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed_ms = (time.perf_counter() - self._start) * 1000.0
        self._watch.timings_ms[self._name] = (
            self._watch.timings_ms.get(self._name, 0.0) + elapsed_ms
        )


class BaseModel:
    """Template: ``predict`` = preprocess -> forward (no grad) -> postprocess.

    Subclasses set ``name`` / ``version`` and implement the three stages.
    ``timings_ms`` of each ``Prediction`` holds the batch's stage times
    divided evenly over its items.
    """

    name: str
    version: str
    device: str
    dtype: torch.dtype

    def preprocess(self, items: Sequence[Item], inputs: Sequence[Any] | None) -> Any:
        raise NotImplementedError

    def forward(self, batch: Any) -> Any:
        raise NotImplementedError

    def postprocess(self, items: Sequence[Item], raw: Any, batch: Any) -> list[Prediction]:
        raise NotImplementedError

    def predict(
        self, items: Sequence[Item], inputs: Sequence[Any] | None = None
    ) -> list[Prediction]:
        import torch

        if inputs is not None and len(inputs) != len(items):
            raise ValueError(f"got {len(inputs)} inputs for {len(items)} items")
        if not items:
            return []
        watch = Stopwatch()
        with watch.stage("preprocess_ms"):
            batch = self.preprocess(items, inputs)
        with watch.stage("forward_ms"), torch.inference_mode():
            raw = self.forward(batch)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
        with watch.stage("postprocess_ms"):
            predictions = self.postprocess(items, raw, batch)
        share = {k: v / len(items) for k, v in watch.timings_ms.items()}
        return [_with_timings(p, share) for p in predictions]


def _with_timings(prediction: Prediction, timings_ms: dict[str, float]) -> Prediction:
    return dataclasses.replace(prediction, timings_ms={**timings_ms, **prediction.timings_ms})
