"""One queue score per prediction (higher = label first).

Kept in one function so the policy can be swapped for ``engine.sampling``'s
detection policy without touching the job.
"""

from __future__ import annotations

from engine.types import Prediction


def item_score(prediction: Prediction) -> float:
    """``1 - max class probability`` over the item's boxes; no box at all -> 1.0."""
    if not prediction.suggestions and prediction.probs.size == 0:
        return 1.0
    return min(max(1.0 - prediction.max_class_prob, 0.0), 1.0)
