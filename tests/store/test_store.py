from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from engine.store import NotFoundError, Store, StoreError, schema
from engine.types import Box, Feedback, Item, Prediction, Suggestion


def _prediction(item_id: str, version: str = "v1", n: int = 2) -> Prediction:
    suggestions = tuple(
        Suggestion("bus", 0.9 - 0.1 * i, Box(i, i, 10 + i, 10 + i), "yolo", version)
        for i in range(n)
    )
    probs = np.tile(np.array([[0.9, 0.1]], dtype=np.float32), (n, 1))
    return Prediction(item_id, "yolo", version, suggestions, probs, ("bus", "car"))


def _items(store: Store, n: int) -> list[Item]:
    items = [Item(f"item-{i}", "image", uri=f"/data/{i}.jpg") for i in range(n)]
    store.add_items(items, [None] * n)
    return items


def test_reingesting_is_idempotent(store: Store) -> None:
    items = _items(store, 3)
    assert store.add_items(items, [None] * 3) == 0
    assert store.count_items() == 3
    assert [i.item_id for i in store.iter_items(batch_size=2)] == [i.item_id for i in items]


def test_prediction_written_once_per_model_version(store: Store) -> None:
    _items(store, 2)
    assert store.save_predictions([_prediction("item-0")], [0.3]) == 1
    assert store.save_predictions([_prediction("item-0")], [0.3]) == 0
    assert store.save_predictions([_prediction("item-0", "v2")], [0.5]) == 1
    assert store.count_predictions() == 2
    assert store.predicted_item_ids("v1") == {"item-0"}
    records = store.suggestions_for("item-0", model_version="v1")
    assert [r.position for r in records] == [0, 1]
    probs = store.prediction_probs(records[0].prediction_id)
    assert probs.shape == (2, 2)
    assert store.suggestions_for("item-0", min_score=0.85)[0].suggestion.score == 0.9


def test_feedback_is_idempotent_and_validated(store: Store) -> None:
    _items(store, 2)
    store.save_predictions([_prediction("item-0"), _prediction("item-1")], [0.1, 0.2])
    suggestion_id = store.suggestions_for("item-0")[0].suggestion_id
    fb = Feedback("item-0", "accept", "click-1", suggestion_id=suggestion_id)
    first, again = store.record_feedback(fb), store.record_feedback(fb)
    assert first.created and not again.created
    assert first.feedback_id == again.feedback_id
    assert len(store.feedback_for("item-0")) == 1
    assert store.get_suggestion(suggestion_id).status == "accepted"
    with pytest.raises(ValueError, match="belongs to item"):
        store.record_feedback(Feedback("item-1", "reject", "k2", suggestion_id=suggestion_id))
    with pytest.raises(NotFoundError):
        store.record_feedback(Feedback("nope", "accept", "k3"))


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(update(schema.meta).values(value=str(schema.SCHEMA_VERSION + 1)))
    store.close()
    with pytest.raises(StoreError, match="newer than this engine supports"):
        Store(url)


def test_job_errors_recorded_once_per_item(store: Store) -> None:
    job = store.create_job("prelabel", {"limit": 3}, model_name="yolo")
    assert store.record_job_errors(job.job_id, [("a", "truncated"), ("a", "truncated")]) == 1
    store.add_progress(job.job_id, done=2, failed=1)
    store.update_job(job.job_id, state="succeeded", total=3)
    record = store.get_job(job.job_id)
    assert (record.state, record.done, record.failed, record.remaining) == ("succeeded", 2, 1, 0)
    assert [e.item_id for e in store.job_errors(job.job_id)] == ["a"]
    with pytest.raises(ValueError, match="job state"):
        store.update_job(job.job_id, state="exploded")
