"""Core value types: items, regions, suggestions, predictions, feedback.

All are frozen dataclasses validated on construction; a bad value raises
``ValueError`` naming the field. Coordinates are absolute pixels (``*_xyxy``),
spans are character offsets into the item text, scores are in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

ItemKind = Literal["image", "text"]
FeedbackAction = Literal["accept", "edit", "reject", "skip"]
ITEM_KINDS: tuple[str, ...] = get_args(ItemKind)
FEEDBACK_ACTIONS: tuple[str, ...] = get_args(FeedbackAction)

FloatArray = npt.NDArray[np.float32]


def _finite(name: str, value: float) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _unit_interval(name: str, value: float) -> float:
    value = _finite(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


@dataclass(frozen=True)
class Item:
    """One image (``uri``) or text (``text``) to label."""

    item_id: str
    kind: ItemKind
    uri: str | None = None
    text: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if not self.item_id or not isinstance(self.item_id, str):
            raise ValueError("item_id must be a non-empty string")
        if self.kind not in ITEM_KINDS:
            raise ValueError(f"kind must be one of {ITEM_KINDS}, got {self.kind!r}")
        if self.kind == "image" and not self.uri:
            raise ValueError(f"image item {self.item_id!r} needs a uri")
        if self.kind == "text" and self.text is None:
            raise ValueError(f"text item {self.item_id!r} needs text")


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in absolute pixels, ``x1 <= x2``, ``y1 <= y2``, all >= 0."""

    x1: float
    y1: float
    x2: float
    y2: float

    kind: Literal["box"] = field(default="box", init=False)

    def __post_init__(self) -> None:
        for name in ("x1", "y1", "x2", "y2"):
            value = _finite(f"box {name}", getattr(self, name))
            if value < 0:
                raise ValueError(f"box {name} must be >= 0, got {value}")
            object.__setattr__(self, name, value)
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise ValueError(f"box must have x1 <= x2 and y1 <= y2, got {self.box_xyxy}")

    @property
    def box_xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def area_px(self) -> float:
        return (self.x2 - self.x1) * (self.y2 - self.y1)

    @classmethod
    def from_xyxy(cls, box_xyxy: Any) -> Box:
        values = [float(v) for v in box_xyxy]
        if len(values) != 4:
            raise ValueError(f"box_xyxy needs 4 numbers, got {len(values)}")
        return cls(*values)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "box", "box_xyxy": list(self.box_xyxy)}


@dataclass(frozen=True)
class Mask:
    """Binary mask as COCO RLE (``counts`` string, ``size`` = height, width) plus its box."""

    mask_rle: str
    height_px: int
    width_px: int
    box: Box

    kind: Literal["mask"] = field(default="mask", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.mask_rle, str):
            raise ValueError("mask_rle must be a COCO compressed RLE string")
        if self.height_px <= 0 or self.width_px <= 0:
            raise ValueError(f"mask size must be positive, got {self.height_px}x{self.width_px}")
        if self.box.x2 > self.width_px or self.box.y2 > self.height_px:
            raise ValueError("mask box lies outside the mask")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "mask",
            "mask_rle": self.mask_rle,
            "height_px": self.height_px,
            "width_px": self.width_px,
            "box_xyxy": list(self.box.box_xyxy),
        }


@dataclass(frozen=True)
class Span:
    """Half-open character range ``[start, end)`` into the item text."""

    start: int
    end: int
    text: str | None = None

    kind: Literal["span"] = field(default="span", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.start, int) or not isinstance(self.end, int):
            raise ValueError("span start and end must be integers")
        if self.start < 0 or self.end <= self.start:
            raise ValueError(f"span needs 0 <= start < end, got [{self.start}, {self.end})")
        if self.text is not None and len(self.text) != self.end - self.start:
            raise ValueError("span text length does not match its offsets")

    def check_within(self, text: str) -> None:
        """Raise if the span runs past ``text`` or its text differs from the slice."""
        if self.end > len(text):
            raise ValueError(f"span end {self.end} is past the end of the text ({len(text)})")
        if self.text is not None and text[self.start : self.end] != self.text:
            raise ValueError("span text does not match the item text at its offsets")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "span", "start": self.start, "end": self.end, "text": self.text}


Region = Box | Mask | Span


def region_from_dict(data: Mapping[str, Any] | None) -> Region | None:
    """Inverse of ``Region.to_dict``; ``None`` means a whole-item label."""
    if data is None:
        return None
    kind = data.get("kind")
    if kind == "box":
        return Box.from_xyxy(data["box_xyxy"])
    if kind == "mask":
        return Mask(
            mask_rle=data["mask_rle"],
            height_px=int(data["height_px"]),
            width_px=int(data["width_px"]),
            box=Box.from_xyxy(data["box_xyxy"]),
        )
    if kind == "span":
        return Span(start=int(data["start"]), end=int(data["end"]), text=data.get("text"))
    raise ValueError(f"unknown region kind {kind!r}; expected box, mask or span")


@dataclass(frozen=True)
class Suggestion:
    """One proposed label. ``score`` is the model's confidence in [0, 1]."""

    label: str
    score: float
    region: Region | None
    model_name: str
    model_version: str
    attributes: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    parent_index: int | None = None

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("suggestion label must be non-empty")
        object.__setattr__(self, "score", _unit_interval("suggestion score", self.score))
        if not self.model_name or not self.model_version:
            raise ValueError("suggestion needs model_name and model_version")


EMBEDDING_WIDTH = 256


def _checked_signals(signals: Mapping[str, Any]) -> dict[str, npt.NDArray[Any]]:
    out: dict[str, npt.NDArray[Any]] = {}
    for name, value in signals.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"signal name must be an identifier, got {name!r}")
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiub":
            raise ValueError(f"signal {name!r} must be numeric, got dtype {arr.dtype}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"signal {name!r} must be finite")
        out[name] = arr
    return out


@dataclass(frozen=True)
class Prediction:
    """Everything one model said about one item.

    ``probs`` has shape ``[n_suggestions, n_classes]``: row i is the class
    distribution behind suggestion i, kept before any display threshold.
    Models without a distribution give shape ``[n_suggestions, 0]``.

    ``embedding``: one vector per item from the model's own forward pass (at
    most ``EMBEDDING_WIDTH`` wide; stored as float16). ``signals``: named
    numeric arrays a ranking policy needs beyond ``probs``, stored with the
    prediction so the queue can be re-ranked without running the model:

    - ``token_probs`` ``[n_words, n_tags]``, ``token_sentence`` / ``token_span``
      ``[n_words]`` (ints, span -1 outside any suggestion): a tagger's word table;
    - ``mc_token_probs`` ``[T, n_words, n_tags]``: the same under T MC-dropout passes;
    - ``sentence_uncertainty`` ``[n_sentences]`` in [0, 1]: backends that score
      sentences directly (spaCy's beam);
    - ``tta_probs`` ``[T, n_suggestions, n_classes]``: each region's class row
      in T test-time-augmented passes (zeros where a pass found no match);
      ``tta_variation_ratio`` / ``tta_iou_spread`` ``[n_suggestions]`` in [0, 1].
    """

    item_id: str
    model_name: str
    model_version: str
    suggestions: tuple[Suggestion, ...]
    probs: FloatArray
    class_names: tuple[str, ...] = ()
    embedding: FloatArray | None = None
    timings_ms: Mapping[str, float] = field(default_factory=dict, hash=False, compare=False)
    signals: Mapping[str, npt.NDArray[Any]] = field(
        default_factory=dict, hash=False, compare=False
    )

    def __post_init__(self) -> None:
        probs = np.asarray(self.probs, dtype=np.float32)
        if probs.ndim != 2:
            raise ValueError(f"probs must be 2-D [n_suggestions, n_classes], got {probs.shape}")
        if probs.shape[0] != len(self.suggestions):
            raise ValueError(
                f"probs has {probs.shape[0]} rows for {len(self.suggestions)} suggestions"
            )
        if probs.shape[1] and probs.shape[1] != len(self.class_names):
            raise ValueError(
                f"probs has {probs.shape[1]} columns for {len(self.class_names)} class names"
            )
        if not np.isfinite(probs).all():
            raise ValueError("probs must be finite")
        object.__setattr__(self, "probs", probs)
        if self.embedding is not None:
            vector = np.asarray(self.embedding, dtype=np.float32)
            if vector.ndim != 1 or not np.isfinite(vector).all():
                raise ValueError(f"embedding must be a finite 1-D vector, got {vector.shape}")
            object.__setattr__(self, "embedding", vector)
        object.__setattr__(self, "signals", _checked_signals(self.signals))

    @property
    def max_class_prob(self) -> float:
        """Highest class probability over all regions, 0.0 when nothing was found."""
        if self.probs.size:
            return float(self.probs.max())
        if self.suggestions:
            return max(s.score for s in self.suggestions)
        return 0.0


@dataclass(frozen=True)
class Feedback:
    """An editor's decision on a suggestion (``suggestion_id``) or a whole item."""

    item_id: str
    action: FeedbackAction
    client_key: str
    suggestion_id: int | None = None
    label: str | None = None
    region: Region | None = None
    annotator: str = "anonymous"
    model_version: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.action not in FEEDBACK_ACTIONS:
            raise ValueError(f"action must be one of {FEEDBACK_ACTIONS}, got {self.action!r}")
        if not self.client_key:
            raise ValueError("client_key must be non-empty (it makes retries idempotent)")
        if self.action == "edit" and self.region is None and self.label is None:
            raise ValueError("edit feedback needs a corrected region or label")
