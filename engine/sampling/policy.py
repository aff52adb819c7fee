"""A ranking policy: how stored predictions become the queue's order (pure data).

``RankPolicy`` names every choice the queue makes; ``configs/server.yaml``
(``rank_policy``), a pre-label job (``rank_policy``), ``labelengine rank
--policy`` and ``POST /queue/rank`` all give one, validated here with errors
that name the field.

- ``score``: ``auto`` (each task's default rule, ``engine.review.scoring``),
  ``least_confidence``, ``margin``, ``entropy``; ``bald`` and
  ``variation_ratio`` read stochastic passes (test-time augmentation, MC
  dropout) where a prediction has them and fall back to ``auto`` where not.
- ``reduction`` (regions or sentences -> item): ``max``, ``mean``, ``sum``,
  ``topk_mean`` (``top_k``); ``sum`` is squashed to [0, 1) by ``1 - e^-x``.
- ``empty_score``: the blind-spot rule, the score of an image with no
  detection at all (1.0: label it first; 0.0: last).
- ``diversity`` over the queue's head of ``head`` items, choosing the
  ``picks`` served first: ``none``,
  ``kcenter`` (k-center greedy on the stored embeddings, so near-duplicates
  do not fill the top), ``hybrid`` (each pick maximises ``(1 - weight) *
  score + weight * distance``, distances scaled to [0, 1]).
- ``sampler``: ``top`` (deterministic) or ``power`` (stochastic top-k: the
  head is drawn without replacement with probability ``∝ score ** beta``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

POLICY_SCORES = ("auto", "least_confidence", "margin", "entropy", "bald", "variation_ratio")
STOCHASTIC = ("bald", "variation_ratio")
POLICY_REDUCTIONS = ("max", "mean", "sum", "topk_mean")
DIVERSITIES = ("none", "kcenter", "hybrid")
POLICY_SAMPLERS = ("top", "power")


class PolicyError(ValueError):
    """A ranking policy field has a value the queue cannot use (names the field)."""


@dataclass(frozen=True)
class RankPolicy:
    score: str = "auto"
    reduction: str = "max"
    top_k: int = 3
    empty_score: float = 1.0
    diversity: str = "none"
    head: int = 2000
    picks: int = 200
    weight: float = 0.5
    sampler: str = "top"
    beta: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        _one_of("score", self.score, POLICY_SCORES)
        _one_of("reduction", self.reduction, POLICY_REDUCTIONS)
        _one_of("diversity", self.diversity, DIVERSITIES)
        _one_of("sampler", self.sampler, POLICY_SAMPLERS)
        _int_at_least("top_k", self.top_k, 1)
        _int_at_least("head", self.head, 1)
        _int_at_least("picks", self.picks, 1)
        _int_at_least("seed", self.seed, 0)
        _number_in("empty_score", self.empty_score, 0.0, 1.0)
        _number_in("weight", self.weight, 0.0, 1.0)
        _number_in("beta", self.beta, 0.0, 100.0)

    @property
    def reorders_head(self) -> bool:
        """Whether ranking does more than sort by score (diversity or sampling)."""
        return self.diversity != "none" or self.sampler != "top"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        parts = [f"score={self.score}", f"reduction={self.reduction}"]
        if self.reduction == "topk_mean":
            parts.append(f"top_k={self.top_k}")
        if self.diversity != "none":
            parts.append(f"diversity={self.diversity} head={self.head} picks={self.picks}")
            if self.diversity == "hybrid":
                parts.append(f"weight={self.weight}")
        if self.sampler != "top":
            parts.append(f"sampler={self.sampler} beta={self.beta}")
        return " ".join(parts)


_FIELDS = {f.name: f.type for f in dataclasses.fields(RankPolicy)}


def policy_from(value: RankPolicy | Mapping[str, Any] | str | None) -> RankPolicy:
    """A policy from a mapping (config / JSON), a ``key=value,...`` string, or None (defaults).

    A bare word in the string is the score (``margin`` = ``score=margin``).
    """
    if value is None:
        return RankPolicy()
    if isinstance(value, RankPolicy):
        return value
    if isinstance(value, str):
        return policy_from(parse_policy(value))
    if not isinstance(value, Mapping):
        raise PolicyError(f"rank policy must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - set(_FIELDS))
    if unknown:
        raise PolicyError(f"rank policy: unknown field {unknown[0]!r}; known: {sorted(_FIELDS)}")
    return RankPolicy(**{key: _coerce(key, raw) for key, raw in value.items()})


def parse_policy(text: str) -> dict[str, Any]:
    """``"margin,reduction=mean,diversity=kcenter"`` -> a mapping (values still strings)."""
    out: dict[str, Any] = {}
    for index, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        if not sep:
            if index:
                raise PolicyError(f"rank policy: {part!r} needs the form key=value")
            key, raw = "score", part
        out[key.strip()] = raw.strip()
    return out


def _coerce(key: str, raw: Any) -> Any:
    kind = _FIELDS[key]
    if kind == "str":
        if not isinstance(raw, str):
            raise PolicyError(f"rank policy field {key!r} must be a string, got {raw!r}")
        return raw
    try:
        if kind == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if isinstance(raw, bool):
            raise ValueError
        return float(raw)
    except (TypeError, ValueError):
        raise PolicyError(f"rank policy field {key!r} must be a number, got {raw!r}") from None


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise PolicyError(f"rank policy field {name!r}: {value!r} is not one of {list(choices)}")


def _int_at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PolicyError(f"rank policy field {name!r} must be an integer >= {low}, got {value!r}")


def _number_in(name: str, value: float, low: float, high: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise PolicyError(f"rank policy field {name!r} must be in [{low}, {high}], got {value!r}")
