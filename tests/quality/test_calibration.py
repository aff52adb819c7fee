"""Calibration batches: a diverse draw, the queue gate, the report, close; and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from quality_data import boxed_items, decide
from typer.testing import CliRunner

from engine.cli import app
from engine.config import load_settings
from engine.quality import calibration
from engine.quality.consensus import QualityStateError
from engine.review import queue
from engine.review.people import add_person
from engine.store import Store


def _items(store: Store, labels: list[str], embeddings: np.ndarray | None = None) -> list[str]:
    return boxed_items(store, [0.5] * len(labels), labels=labels, embeddings=embeddings)


def _drain(store: Store, person: str, *, action: str = "accept") -> list[str]:
    got = []
    while (lease := queue.next_item(store, person, lease_seconds=60)) is not None:
        got.append(lease.item_id)
        decide(store, lease.item_id, person, action)
    return got


def test_a_stratified_batch_gates_the_queue_until_a_reviewer_closes_it(store: Store) -> None:
    ids = _items(store, ["cat"] * 10 + ["dog"] * 10 + ["bird"] * 10)
    for name in ("a", "b"):
        add_person(store, name, "annotator")
    drawn = calibration.draw_calibration(store, size=6, seed=3)
    assert (drawn.method, drawn.k, drawn.batch.batch_id) == ("stratified", 2, "calibration-1")
    labels = store.top_labels(list(drawn.item_ids))
    assert sorted(labels.values()) == ["bird", "bird", "cat", "cat", "dog", "dog"]
    # each person gets the batch and nothing else, however much is queued
    assert sorted(_drain(store, "a")) == sorted(drawn.item_ids)
    assert sorted(_drain(store, "b")) == sorted(drawn.item_ids)
    report = calibration.calibration_report(store, drawn.batch.batch_id)
    assert (report["items"], report["finished_by_all"]) == (6, 6)
    closed = calibration.close_calibration(store, drawn.batch.batch_id, by="rita")
    assert (closed.state, closed.closed_by) == ("closed", "rita")
    with pytest.raises(QualityStateError, match="already closed"):
        calibration.close_calibration(store, drawn.batch.batch_id, by="rita")
    rest = _drain(store, "a")
    assert len(rest) == 24 and set(rest) == set(ids) - set(drawn.item_ids)


def test_the_report_puts_the_disputed_items_and_classes_first(store: Store) -> None:
    _items(store, ["cat"] * 4 + ["dog"] * 4)
    drawn = calibration.draw_calibration(store, size=4, k=2, seed=0)
    _drain(store, "a")
    dogs = [i for i, label in store.top_labels(list(drawn.item_ids)).items() if label == "dog"]
    while (lease := queue.next_item(store, "b", lease_seconds=60)) is not None:
        # b rejects every dog box: people disagree on dogs only
        decide(store, lease.item_id, "b", "reject" if lease.item_id in dogs else "accept")
    report = calibration.calibration_report(store, drawn.batch.batch_id)
    assert {i["item_id"] for i in report["lowest_items"][: len(dogs)]} == set(dogs)
    assert all(i["agreement"] == 0.5 for i in report["lowest_items"][: len(dogs)])
    assert report["lowest_classes"][0]["label"] in {"cat", "dog"}
    assert report["verdict"] == "clarify"


def test_k_center_on_stored_embeddings_spreads_over_distinct_images(store: Store) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=16).astype(np.float32)
    near = base + 0.01 * rng.normal(size=(40, 16)).astype(np.float32)  # one photo, 40 times
    distinct = 5.0 * rng.normal(size=(5, 16)).astype(np.float32)
    ids = _items(store, ["cat"] * 45, np.concatenate([near, distinct]))
    drawn = calibration.draw_calibration(store, size=6, k=2)
    assert drawn.method == "k-center"
    assert len(set(drawn.item_ids) & set(ids[40:])) == 5  # every distinct one
    assert len(set(drawn.item_ids) & set(ids[:40])) == 1  # and the duplicate photo once


def test_a_batch_needs_two_people_and_items(store: Store) -> None:
    with pytest.raises(ValueError, match=">= 2 people"):
        calibration.draw_calibration(store, size=5)
    with pytest.raises(ValueError, match="no unlabeled items"):
        calibration.draw_calibration(store, size=5, k=2)


def test_the_batch_and_report_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABELENGINE_DATA_DIR", str(tmp_path / "data"))
    store = Store(load_settings().resolved_database_url)
    _items(store, ["cat", "dog", "cat", "dog"])
    store.close()
    runner = CliRunner()
    opened = runner.invoke(app, ["batch", "calibration", "--size", "2", "--k", "2"])
    assert opened.exit_code == 0, opened.output
    assert "calibration-1: 2 items (stratified) for 2 people" in opened.output
    report = runner.invoke(app, ["batch", "report", "calibration-1"])
    assert report.exit_code == 0 and json.loads(report.output)["items"] == 2
    missing = runner.invoke(app, ["batch", "report", "calibration-9"])
    assert missing.exit_code != 0 and "calibration-9" in missing.output
    closed = runner.invoke(app, ["batch", "close", "calibration-1", "--by", "rita"])
    assert closed.exit_code == 0 and "closed by rita" in closed.output
    quality = runner.invoke(app, ["report", "quality"])
    assert quality.exit_code == 0 and "Agreement per class" in quality.output
    as_json = runner.invoke(app, ["report", "quality", "--json"])
    assert json.loads(as_json.output)["resolution"]["items"] == 2
    overlap = runner.invoke(app, ["quality", "overlap", "--k", "3", "--fraction", "0.5"])
    assert overlap.exit_code == 0 and "1 items now go to 3 people each" in overlap.output
