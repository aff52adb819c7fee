"""Database tables (SQLAlchemy Core). One place for the schema and its version.

Bump ``SCHEMA_VERSION`` with every change to an existing table; a database
written by a newer engine is refused rather than silently misread. A new table
(``users``) needs no bump: ``create_all`` adds it to an older database, and an
older engine never reads it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    false,
)

SCHEMA_VERSION = 1

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

items = Table(
    "items",
    metadata,
    Column("item_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("uri", Text),
    Column("text", Text),
    Column("content_sha256", String(64)),
    Column("metadata", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Queue state, denormalised so `next` is one indexed UPDATE.
    Column("score", Float),  # latest uncertainty score; higher = label first
    Column("score_model_version", String(128)),
    Column("labeled", Boolean, nullable=False, default=False),
    # True when confidence routing labeled the item (every suggestion machine-accepted);
    # a later human decision clears it (engine.review.routing, review.queue.after_feedback).
    Column("machine_labeled", Boolean, nullable=False, default=False, server_default=false()),
    Column("leased_by", String(128)),
    Column("lease_expires_at", Float),  # epoch seconds
)

# The queue's hot path (engine.review.queue.next_item): a partial index holding only the
# rows that can be served, in serving order, so `next` reads the first few entries
# instead of sorting the backlog. Queries must spell the same predicate
# (`labeled = false()` as a literal, not a bound parameter) for SQLite to use it.
_READY = and_(items.c.labeled == false(), items.c.score.is_not(None))
Index(
    "ix_items_ready",
    items.c.score.desc(),
    items.c.item_id,
    sqlite_where=_READY,
    postgresql_where=_READY,
)
# Leases currently out (tiny): "does this annotator already hold an item?"
Index(
    "ix_items_leased_by",
    items.c.leased_by,
    sqlite_where=items.c.leased_by.is_not(None),
    postgresql_where=items.c.leased_by.is_not(None),
)

predictions = Table(
    "predictions",
    metadata,
    Column("prediction_id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(128), ForeignKey("items.item_id"), nullable=False, index=True),
    Column("model_name", String(128), nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("job_id", String(64)),
    Column("class_names", JSON, nullable=False),
    Column("probs", LargeBinary, nullable=False),  # float32, [n_suggestions, n_classes]
    Column("embedding", LargeBinary),  # float32 vector or null
    Column("timings_ms", JSON, nullable=False),
    Column("score", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("item_id", "model_version", name="uq_prediction_item_version"),
)

# What ranking needs beyond the class rows (engine.types.Prediction): the item embedding
# (float16, at most EMBEDDING_WIDTH wide) and the named signal arrays (an .npz, no pickle).
# A table of its own so databases written before it need no schema bump.
prediction_extras = Table(
    "prediction_extras",
    metadata,
    Column(
        "prediction_id",
        Integer,
        ForeignKey("predictions.prediction_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("embedding_f16", LargeBinary),
    Column("signals_npz", LargeBinary),
)

suggestions = Table(
    "suggestions",
    metadata,
    Column("suggestion_id", Integer, primary_key=True, autoincrement=True),
    Column(
        "prediction_id",
        Integer,
        ForeignKey("predictions.prediction_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("item_id", String(128), nullable=False, index=True),
    Column("position", Integer, nullable=False),  # row in the prediction's probs
    Column("label", String(256), nullable=False),
    Column("score", Float, nullable=False),
    Column("region", JSON),
    Column("model_name", String(128), nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("parent_position", Integer),
    # pending | machine_accepted (engine.review.routing) | accepted | edited | rejected
    Column("status", String(32), nullable=False, default="pending"),
    Index("ix_suggestions_label_item", "label", "item_id", "score"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("feedback_id", Integer, primary_key=True, autoincrement=True),
    Column("client_key", String(128), nullable=False, unique=True),
    Column("item_id", String(128), ForeignKey("items.item_id"), nullable=False, index=True),
    Column("suggestion_id", Integer, ForeignKey("suggestions.suggestion_id")),
    Column("action", String(16), nullable=False),
    Column("label", String(256)),
    Column("region", JSON),
    Column("annotator", String(128), nullable=False),
    Column("model_version", String(128)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("config", JSON, nullable=False),
    Column("model_name", String(128)),
    Column("model_version", String(128)),
    Column("total", Integer, nullable=False, default=0),
    Column("done", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("message", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

job_errors = Table(
    "job_errors",
    metadata,
    Column("error_id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), ForeignKey("jobs.job_id"), nullable=False, index=True),
    Column("item_id", String(128), nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("job_id", "item_id", name="uq_job_error_item"),
)

# People with their own token (``labelengine users add``); the token itself is never
# stored, only its sha256. The service token (settings.api_token) is not a row here.
users = Table(
    "users",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("role", String(16), nullable=False),  # annotator | reviewer | admin
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

# Items under consensus (role ``overlap``: k distinct people each label it) or gold
# (role ``gold``: known labels, served to every annotator once, scoring the person).
# New tables, so no schema bump (see the module docstring). engine.quality.consensus
# is the policy; a quality item never goes through the single-person claim.
quality_items = Table(
    "quality_items",
    metadata,
    Column("item_id", String(128), ForeignKey("items.item_id"), primary_key=True),
    Column("role", String(16), nullable=False),  # overlap | gold
    Column("k", Integer),  # people per overlap item; null for gold (everyone, once)
    Column("state", String(16), nullable=False),  # open | review | final
    Column("final_labels", JSON),  # [{"label": ..., "region": {...} | null}, ...]
    Column("resolution", String(16)),  # consensus | reviewer | gold
    Column("resolved_by", String(128)),
    Column("batch", String(64)),  # calibration batch id, null for the regular backlog
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Index("ix_quality_role_state", "role", "state"),
)

# Who holds or finished a quality item. ``slot`` numbers an overlap item's k places
# (unique per item, so no more than k people can ever hold or finish it, on either
# database); gold assignments have no slot. One row per (item, person): never twice.
assignments = Table(
    "assignments",
    metadata,
    Column("assignment_id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(128), ForeignKey("items.item_id"), nullable=False),
    Column("annotator", String(128), nullable=False),
    Column("slot", Integer),
    Column("leased_at", Float, nullable=False),  # epoch seconds
    Column("expires_at", Float, nullable=False),
    Column("done_at", Float),
    UniqueConstraint("item_id", "annotator", name="uq_assignment_item_annotator"),
    UniqueConstraint("item_id", "slot", name="uq_assignment_item_slot"),
    Index("ix_assignments_annotator", "annotator"),
)

# Calibration batches: a small diverse sample every annotator labels first (full
# overlap, its items are overlap items with this ``batch``). While one is open the
# queue serves nothing else; a reviewer closes it and regular work starts.
batches = Table(
    "batches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # calibration
    Column("state", String(16), nullable=False),  # open | closed
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("closed_by", String(128)),
)
