"""Confidence routing: auto-accept confident suggestions, calibrate the thresholds.

**Routing.** ``RoutingConfig`` holds one auto-accept threshold per label (a
default plus a per-label map; ``None`` means "never auto-accept"). A pending
suggestion whose ``score >= threshold(label)`` gets status
``machine_accepted``; the rest stay ``pending`` for people. An unlabeled item
whose suggestions (those of the model version that scored it) are all
``machine_accepted`` (or already ``accepted`` by a person, at least one by the
machine) leaves the queue: ``labeled = true, machine_labeled = true``. Items
under a live lease are left alone (the person looking at it decides). An item
with no suggestion is never machine-labeled (a detector that saw nothing is a
blind spot, not a confident answer).

Everything is reversible and visible: the status is stored per suggestion; a
later human decision on a machine-accepted suggestion overwrites its status
(``store.record_feedback``) and ``engine.review.queue.after_feedback`` returns a
machine-labeled item to the queue on a suggestion ``edit`` / ``reject``;
``revert_machine_labels`` undoes routing wholesale.

**Calibration.** ``calibrate_thresholds`` picks, per label, the lowest
threshold whose historical precision reaches ``target_precision``, from
human feedback on suggestions (``feedback_history``):

- ``accept`` = correct;
- ``reject`` = incorrect;
- ``edit`` = incorrect when it changed the label or the region (auto-accepting
  would have stored something a person had to correct); an edit that changed
  neither counts as correct;
- ``skip`` and item-level feedback say nothing about a suggestion and are
  ignored; when one suggestion has several decisions the latest counts.

Candidate thresholds are the distinct observed scores; at threshold ``τ``
precision = correct / all with ``score >= τ`` and recall = correct with
``score >= τ`` / all correct. A label with fewer than ``min_count`` decisions,
or whose precision never reaches the target, gets no auto-accept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.store import Store, Verdict


def _check_threshold(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1] or None, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RoutingConfig:
    """Auto-accept thresholds: ``label_thresholds[label]`` if present, else the default."""

    default_threshold: float | None = None
    label_thresholds: Mapping[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_threshold("default_threshold", self.default_threshold)
        for label, value in self.label_thresholds.items():
            if not label:
                raise ValueError("label_thresholds keys must be non-empty labels")
            _check_threshold(f"label_thresholds[{label!r}]", value)

    def threshold_for(self, label: str) -> float | None:
        return self.label_thresholds.get(label, self.default_threshold)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RoutingConfig:
        """From ``{"default": 0.97, "labels": {"person": 0.9, "rider": null}}`` (YAML shape)."""
        unknown = set(data) - {"default", "labels"}
        if unknown:
            raise ValueError(f"unknown routing keys {sorted(unknown)}; expected default, labels")
        labels = data.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise ValueError("routing 'labels' must map label -> threshold")
        return cls(data.get("default"), dict(labels))


@dataclass(frozen=True)
class RoutingResult:
    suggestions: int  # suggestions whose status changed
    items: int  # items that left (route) or re-entered (revert) the queue


def route_suggestions(
    store: Store,
    config: RoutingConfig,
    *,
    item_ids: Sequence[str] | None = None,
    model_version: str | None = None,
    now: float | None = None,
) -> RoutingResult:
    """Machine-accept confident pending suggestions and machine-label finished items.

    Restricted to ``item_ids`` and / or suggestions of ``model_version`` when
    given. Idempotent: running it twice changes nothing the second time.
    """
    clock = time.time() if now is None else now
    n_suggestions, n_items = store.machine_accept(
        config.default_threshold,
        config.label_thresholds,
        item_ids=item_ids,
        model_version=model_version,
        now=clock,
    )
    return RoutingResult(n_suggestions, n_items)


def revert_machine_labels(store: Store, *, item_ids: Sequence[str] | None = None) -> RoutingResult:
    """Undo routing: machine-accepted suggestions back to pending, items back in the queue."""
    return RoutingResult(*store.revert_machine_labels(item_ids=item_ids))


# -- calibration ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A human verdict on one suggestion: was the model's ``label`` at ``score`` right?"""

    label: str
    score: float
    correct: bool


def feedback_history(store: Store, *, model_version: str | None = None) -> list[Outcome]:
    """Outcomes of every suggestion a person decided on (latest decision per suggestion)."""
    return [
        Outcome(d.suggested_label, d.score, _correct(d))
        for d in store.verdicts(model_version=model_version)
    ]


def _correct(verdict: Verdict) -> bool:
    if verdict.action != "edit":
        return verdict.action == "accept"
    label_kept = verdict.label is None or verdict.label == verdict.suggested_label
    region_kept = verdict.region is None or verdict.region == verdict.suggested_region
    return label_kept and region_kept


@dataclass(frozen=True)
class ThresholdRow:
    threshold: float  # auto-accept when score >= threshold
    n_accepted: int  # decisions at or above the threshold
    n_correct: int  # ... of which correct
    precision: float
    recall: float  # n_correct / all correct decisions of the label


@dataclass(frozen=True)
class LabelCalibration:
    label: str
    n_feedback: int
    n_correct: int
    threshold: float | None  # None: no auto-accept for this label
    reason: str
    table: tuple[ThresholdRow, ...]

    @property
    def chosen(self) -> ThresholdRow | None:
        return next((r for r in self.table if r.threshold == self.threshold), None)


def _table(scores: np.ndarray, correct: np.ndarray) -> tuple[ThresholdRow, ...]:
    order = np.argsort(scores, kind="stable")
    s_sorted, c_sorted = scores[order], correct[order].astype(np.int64)
    candidates = np.unique(s_sorted)
    first = np.searchsorted(s_sorted, candidates, side="left")
    n_above = len(s_sorted) - first
    correct_tail = np.concatenate([np.cumsum(c_sorted[::-1])[::-1], [0]])
    n_correct = correct_tail[first]
    total_correct = max(int(c_sorted.sum()), 1)
    return tuple(
        ThresholdRow(float(v), int(n), int(k), k / n, k / total_correct)
        for v, n, k in zip(candidates, n_above, n_correct, strict=True)
    )


def _calibrate_label(
    label: str, scores: np.ndarray, correct: np.ndarray, target: float, min_count: int
) -> LabelCalibration:
    n, k = len(scores), int(correct.sum())
    if n < min_count:
        reason = f"only {n} decisions (< min_count {min_count}): no auto-accept"
        return LabelCalibration(label, n, k, None, reason, ())
    table = _table(scores, correct)
    passing = [row for row in table if row.precision >= target - 1e-12]
    if not passing:
        best = max(row.precision for row in table)
        reason = f"precision never reaches {target:g} (best {best:.3f}): no auto-accept"
        return LabelCalibration(label, n, k, None, reason, table)
    row = passing[0]
    reason = f"lowest threshold with precision >= {target:g}"
    return LabelCalibration(label, n, k, row.threshold, reason, table)


@dataclass(frozen=True)
class CalibrationReport:
    target_precision: float
    min_count: int
    labels: Mapping[str, LabelCalibration]

    def to_config(self, *, default_threshold: float | None = None) -> RoutingConfig:
        """Per-label thresholds from this report; a label it covers without one gets None."""
        thresholds = {label: cal.threshold for label, cal in self.labels.items()}
        return RoutingConfig(default_threshold, thresholds)

    def to_markdown(self, *, max_rows: int = 12) -> str:
        """A summary table and, per calibrated label, precision / recall by threshold."""
        lines = [
            f"Target precision {self.target_precision:g}, min_count {self.min_count}.",
            "",
            "| label | decisions | correct | threshold | precision | recall | note |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for cal in self.labels.values():
            row = cal.chosen
            cells = (
                ("-", "-", "-")
                if row is None
                else (f"{row.threshold:.4f}", f"{row.precision:.3f}", f"{row.recall:.3f}")
            )
            lines.append(
                f"| {cal.label} | {cal.n_feedback} | {cal.n_correct} | "
                f"{' | '.join(cells)} | {cal.reason} |"
            )
        for cal in self.labels.values():
            if cal.table:
                lines += ["", f"**{cal.label}**", "", *_rows_markdown(cal, max_rows)]
        return "\n".join(lines)


def _rows_markdown(cal: LabelCalibration, max_rows: int) -> list[str]:
    picks = np.unique(np.linspace(0, len(cal.table) - 1, num=max(max_rows, 2)).astype(int))
    rows = {int(i) for i in picks}
    if cal.chosen is not None:
        rows.add(cal.table.index(cal.chosen))
    out = ["| threshold | accepted | correct | precision | recall |", "|---:|---:|---:|---:|---:|"]
    for i in sorted(rows):
        r = cal.table[i]
        mark = " **chosen**" if r is cal.chosen else ""
        out.append(
            f"| {r.threshold:.4f}{mark} | {r.n_accepted} | {r.n_correct} | "
            f"{r.precision:.3f} | {r.recall:.3f} |"
        )
    return out


def calibrate_thresholds(
    history: Iterable[Outcome], target_precision: float = 0.98, *, min_count: int = 50
) -> CalibrationReport:
    """Per-label auto-accept thresholds from past outcomes (see the module docstring)."""
    if not isinstance(target_precision, int | float) or not 0 < target_precision <= 1:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision!r}")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    by_label: dict[str, tuple[list[float], list[bool]]] = {}
    for outcome in history:
        if not math.isfinite(outcome.score) or not 0 <= outcome.score <= 1:
            raise ValueError(f"outcome score must be in [0, 1], got {outcome.score!r}")
        scores, correct = by_label.setdefault(outcome.label, ([], []))
        scores.append(outcome.score)
        correct.append(bool(outcome.correct))
    labels = {
        label: _calibrate_label(
            label, np.asarray(s, np.float64), np.asarray(c, bool), target_precision, min_count
        )
        for label, (s, c) in sorted(by_label.items())
    }
    return CalibrationReport(float(target_precision), min_count, labels)


def calibrate_from_store(
    store: Store,
    target_precision: float = 0.98,
    *,
    min_count: int = 50,
    model_version: str | None = None,
) -> CalibrationReport:
    """``calibrate_thresholds(feedback_history(store, model_version=...), ...)``."""
    history = feedback_history(store, model_version=model_version)
    return calibrate_thresholds(history, target_precision, min_count=min_count)
