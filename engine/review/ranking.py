"""Re-rank the live queue under a ``RankPolicy`` from stored predictions, no model run.

``rank_backlog(store, policy)`` pages through every unlabeled item's scoring
prediction (``store.ranked_backlog``: class rows, region attributes,
embeddings and signals as stored), scores it with ``queue_score`` under the
policy, writes the scores that changed, makes the policy the queue's current
one (``current_policy``: what Label Studio's ``/predict`` and later jobs
score with) and orders the head (``order_head``).

``order_head(store, policy)``: when the policy diversifies or samples, the
``policy.head`` best unlabeled items are permuted by
``engine.sampling.head.head_order`` and their scores rewritten as the same
sorted values plus a tiny strictly decreasing bonus (at most ``head * 1e-9``),
so the serving order (score, then id) follows the permutation while every
item outside the head keeps its score and its place behind it. The head is
ordered once per call: a pre-label job calls it when it ends, and
``labelengine rank`` / ``POST /queue/rank`` call it on demand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.review.scoring import queue_score
from engine.sampling.head import head_order
from engine.sampling.policy import RankPolicy, policy_from
from engine.store import Store

_POLICY_KEY = "rank_policy"
_BONUS = 1e-9
_CHANGED = 1e-12


@dataclass(frozen=True)
class RankReport:
    policy: RankPolicy
    n_scored: int
    n_changed: int
    n_head: int
    n_head_embedded: int
    seconds: float


def current_policy(
    store: Store, default: RankPolicy | Mapping[str, Any] | None = None
) -> RankPolicy:
    """The policy the queue was last ranked with, else ``default`` (a policy or its
    fields, e.g. ``settings.rank_policy``; else the defaults)."""
    raw = store.meta_value(_POLICY_KEY)
    return policy_from(default if raw is None else json.loads(raw))


def remember_policy(store: Store, policy: RankPolicy) -> None:
    defaults = RankPolicy().to_dict()
    changed = {k: v for k, v in policy.to_dict().items() if defaults[k] != v}
    store.set_meta_value(_POLICY_KEY, json.dumps(changed, separators=(",", ":")))


def rank_backlog(store: Store, policy: RankPolicy, *, page: int = 500) -> RankReport:
    """Score every unlabeled item again under ``policy``; see the module docstring."""
    start = time.perf_counter()
    ids: list[str] = []
    scores: list[float] = []
    n_scored = 0
    for rows in store.ranked_backlog(page=page):
        for row in rows:
            n_scored += 1
            new = queue_score(row.prediction, row.kind, policy)
            if row.item_score is None or abs(new - row.item_score) > _CHANGED:
                ids.append(row.item_id)
                scores.append(new)
    if ids:
        store.set_scores(ids, scores, None)
    remember_policy(store, policy)
    n_head, n_embedded = order_head(store, policy)
    seconds = time.perf_counter() - start
    return RankReport(policy, n_scored, len(ids), n_head, n_embedded, seconds)


def order_head(store: Store, policy: RankPolicy) -> tuple[int, int]:
    """Permute the queue's head under the policy; ``(head size, items with embeddings)``."""
    if not policy.reorders_head:
        return 0, 0
    head = store.top_items(limit=policy.head)
    if len(head) < 2:
        return len(head), 0
    ids = [item_id for item_id, _, _ in head]
    values = np.array([score for _, score, _ in head], dtype=np.float64)
    embeddings = store.latest_embeddings(ids)
    vectors = [embeddings.get(item_id) for item_id in ids]
    order = head_order(values, vectors, policy)
    bonus = _BONUS * np.arange(len(ids), 0, -1, dtype=np.float64)
    new_scores = values + bonus  # values are sorted descending: strictly decreasing now
    store.set_scores([ids[i] for i in order], [float(s) for s in new_scores], None)
    return len(ids), sum(v is not None for v in vectors)
