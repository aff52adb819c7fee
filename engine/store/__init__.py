"""The store: every table and every SQL statement of the engine, behind one ``Store``.

SQLite (WAL) by default, PostgreSQL by URL. Every write is idempotent where a
retry is plausible: re-ingesting an item, writing a prediction that already
exists for the same model version, posting feedback with the same client key.
``Store`` is the query mixins of this package together, one file per concern:
``items``, ``predictions``, ``feedback``, ``jobs``, ``queue``, ``routing`` and
``labels`` (the labels after review), ``users``, ``consensus`` (quality items),
``batches`` (calibration),
over ``base.StoreCore`` and ``schema``.
No other package imports SQLAlchemy.
"""

from __future__ import annotations

from engine.store.base import NotFoundError, StoreError, StoreHealth, StoreUnavailableError
from engine.store.jobs import FINAL_STATES, JOB_STATES, JobQueries, JobState
from engine.store.labels import ItemLabels, LabelQueries, LabelSource, ReviewedLabel
from engine.store.queue import QueueFilter, QueueQueries
from engine.store.records import (
    Assignment,
    Batch,
    ClickTarget,
    FeedbackRecord,
    ImageRow,
    JobError,
    JobRecord,
    Lease,
    QualityItem,
    SuggestionRecord,
    UserRecord,
    Verdict,
)
from engine.store.routing import MACHINE_ACCEPTED, PENDING, RoutingQueries
from engine.store.users import UserQueries

__all__ = [
    "FINAL_STATES",
    "JOB_STATES",
    "MACHINE_ACCEPTED",
    "PENDING",
    "Assignment",
    "Batch",
    "ClickTarget",
    "FeedbackRecord",
    "ImageRow",
    "ItemLabels",
    "JobError",
    "JobRecord",
    "JobState",
    "LabelSource",
    "Lease",
    "NotFoundError",
    "QualityItem",
    "QueueFilter",
    "ReviewedLabel",
    "Store",
    "StoreError",
    "StoreHealth",
    "StoreUnavailableError",
    "SuggestionRecord",
    "UserRecord",
    "Verdict",
]


class Store(LabelQueries, JobQueries, QueueQueries, RoutingQueries, UserQueries):
    """All persistent state. Thread-safe: each call uses its own connection."""
