from __future__ import annotations

import numpy as np
import pytest

from engine.review import queue, routing
from engine.review.routing import Outcome, RoutingConfig
from engine.store import Store
from engine.types import Box, Feedback, Item, Prediction, Suggestion


def _add(store: Store, item_id: str, suggestions: list[tuple[str, float]], score: float) -> None:
    """One item, one prediction with ``(label, confidence)`` suggestions, queue ``score``."""
    store.add_items([Item(item_id, "image", uri=f"/x/{item_id}.jpg")], [None])
    made = tuple(
        Suggestion(label, conf, Box(i, i, i + 5, i + 5), "m", "v1")
        for i, (label, conf) in enumerate(suggestions)
    )
    store.save_predictions(
        [Prediction(item_id, "m", "v1", made, np.zeros((len(made), 0), np.float32))], [score]
    )


def _statuses(store: Store, item_id: str) -> list[str]:
    return [r.status for r in store.suggestions_for(item_id)]


def _served(store: Store) -> list[str]:
    served: list[str] = []
    while (lease := queue.next_item(store, f"a{len(served)}", lease_seconds=60)) is not None:
        served.append(lease.item_id)
    return served


CONFIG = RoutingConfig(default_threshold=0.9, label_thresholds={"cat": 0.8, "rare": None})


def test_config_thresholds_and_validation() -> None:
    assert CONFIG.threshold_for("cat") == 0.8
    assert CONFIG.threshold_for("rare") is None
    assert CONFIG.threshold_for("dog") == 0.9
    loaded = RoutingConfig.from_mapping({"default": 0.9, "labels": {"cat": 0.8, "rare": None}})
    assert loaded == CONFIG
    with pytest.raises(ValueError, match="default_threshold"):
        RoutingConfig(default_threshold=1.5)
    with pytest.raises(ValueError, match=r"label_thresholds\['cat'\]"):
        RoutingConfig(label_thresholds={"cat": -0.1})
    with pytest.raises(ValueError, match="unknown routing keys"):
        RoutingConfig.from_mapping({"default": 0.9, "threshold": 0.5})


def test_confident_suggestions_are_machine_accepted_and_finished_items_leave(
    store: Store,
) -> None:
    _add(store, "all-sure", [("cat", 0.85), ("dog", 0.95)], 0.9)
    _add(store, "one-unsure", [("cat", 0.85), ("dog", 0.85)], 0.8)
    _add(store, "disabled", [("rare", 0.99)], 0.7)
    _add(store, "empty", [], 0.6)
    result = routing.route_suggestions(store, CONFIG)
    assert (result.suggestions, result.items) == (3, 1)
    assert _statuses(store, "all-sure") == ["machine_accepted", "machine_accepted"]
    assert _statuses(store, "one-unsure") == ["machine_accepted", "pending"]
    assert _statuses(store, "disabled") == ["pending"]
    assert _served(store) == ["one-unsure", "disabled", "empty"]
    again = routing.route_suggestions(store, CONFIG)
    assert (again.suggestions, again.items) == (0, 0)


def test_routing_can_be_limited_to_items(store: Store) -> None:
    _add(store, "a", [("dog", 0.95)], 0.5)
    _add(store, "b", [("dog", 0.95)], 0.4)
    result = routing.route_suggestions(store, CONFIG, item_ids=["b"])
    assert (result.suggestions, result.items) == (1, 1)
    assert _statuses(store, "a") == ["pending"]
    assert _served(store) == ["a"]


def test_a_leased_item_is_not_taken_from_its_annotator(store: Store) -> None:
    _add(store, "a", [("dog", 0.95)], 0.5)
    lease = queue.next_item(store, "alice", lease_seconds=60, now=1000.0)
    assert lease is not None
    result = routing.route_suggestions(store, CONFIG, now=1010.0)
    assert (result.suggestions, result.items) == (1, 0)
    assert queue.next_item(store, "alice", lease_seconds=60, now=1020.0) == lease
    later = routing.route_suggestions(store, CONFIG, now=1100.0)  # lease expired
    assert later.items == 1


def test_human_feedback_overrides_the_machine(store: Store) -> None:
    _add(store, "a", [("dog", 0.95)], 0.5)
    _add(store, "b", [("dog", 0.97)], 0.4)
    routing.route_suggestions(store, CONFIG)
    assert _served(store) == []
    dog_a = store.suggestions_for("a")[0].suggestion_id
    reject = store.record_feedback(Feedback("a", "reject", "r1", suggestion_id=dog_a))
    assert queue.after_feedback(store, reject) == "requeued"
    assert _statuses(store, "a") == ["rejected"]
    confirm = store.record_feedback(Feedback("b", "accept", "c1"))
    assert queue.after_feedback(store, confirm) == "confirmed"
    assert _served(store) == ["a"]
    assert routing.revert_machine_labels(store).items == 0  # b is now a human label


def test_revert_machine_labels_restores_the_queue(store: Store) -> None:
    _add(store, "a", [("dog", 0.95), ("cat", 0.5)], 0.5)
    _add(store, "b", [("dog", 0.97)], 0.4)
    routing.route_suggestions(store, CONFIG)
    reverted = routing.revert_machine_labels(store)
    assert (reverted.suggestions, reverted.items) == (2, 1)
    assert _statuses(store, "a") == ["pending", "pending"]
    assert _served(store) == ["a", "b"]


def _known_history() -> list[Outcome]:
    """cat: 100 correct in [0.80, 0.99], 100 wrong in [0.10, 0.49]; dog: too few; bird: bad."""
    cat = [Outcome("cat", float(s), True) for s in np.linspace(0.80, 0.99, 100)]
    cat += [Outcome("cat", float(s), False) for s in np.linspace(0.10, 0.49, 100)]
    dog = [Outcome("dog", 0.99, True)] * 30
    scores = np.linspace(0.05, 0.95, 60)
    bird = [Outcome("bird", float(s), bool(s < 0.5)) for s in scores]  # anti-calibrated
    return cat + dog + bird


def test_calibration_finds_the_known_threshold() -> None:
    report = routing.calibrate_thresholds(_known_history(), 0.98, min_count=50)
    cat = report.labels["cat"]
    # 100 correct + j wrong has precision >= 0.98 iff j <= 2: the 2nd-highest wrong score.
    assert cat.threshold == pytest.approx(np.linspace(0.10, 0.49, 100)[-2])
    chosen = cat.chosen
    assert chosen is not None
    assert (chosen.n_accepted, chosen.n_correct, chosen.recall) == (102, 100, 1.0)
    assert chosen.precision == pytest.approx(100 / 102)
    assert len(cat.table) == 200
    assert report.labels["dog"].threshold is None and "min_count" in report.labels["dog"].reason
    assert report.labels["bird"].threshold is None and "never" in report.labels["bird"].reason
    config = report.to_config(default_threshold=None)
    assert config.threshold_for("cat") == cat.threshold
    assert config.threshold_for("dog") is None
    text = report.to_markdown(max_rows=5)
    assert "**chosen**" in text and "| cat | 200 | 100 |" in text


def test_calibration_recovers_the_analytic_threshold_of_a_calibrated_model() -> None:
    # P(correct | s) = s with s ~ U(0, 1): precision(τ) = (1 + τ) / 2, so 0.98 needs τ = 0.96.
    rng = np.random.default_rng(7)
    scores = rng.random(40_000)
    correct = rng.random(40_000) < scores
    history = [Outcome("x", float(s), bool(c)) for s, c in zip(scores, correct, strict=True)]
    cal = routing.calibrate_thresholds(history, 0.98, min_count=50).labels["x"]
    assert cal.threshold is not None and abs(cal.threshold - 0.96) < 0.01
    # Every row agrees with a direct count.
    for row in cal.table[:: len(cal.table) // 50]:
        above = scores >= row.threshold
        assert row.n_accepted == above.sum()
        assert row.precision == pytest.approx(correct[above].mean())
        assert row.recall == pytest.approx(correct[above].sum() / correct.sum())


def test_calibration_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="target_precision"):
        routing.calibrate_thresholds([], 1.5)
    with pytest.raises(ValueError, match="min_count"):
        routing.calibrate_thresholds([], 0.9, min_count=0)
    with pytest.raises(ValueError, match="score"):
        routing.calibrate_thresholds([Outcome("x", 1.2, True)])


def test_history_from_store_follows_the_documented_rules(store: Store) -> None:
    _add(store, "a", [("cat", 0.9), ("cat", 0.8), ("cat", 0.7), ("cat", 0.6), ("dog", 0.5)], 0.5)
    ids = [r.suggestion_id for r in store.suggestions_for("a")]
    box = Box(0, 0, 5, 5)
    decisions = [
        Feedback("a", "reject", "k0", suggestion_id=ids[0]),
        Feedback("a", "accept", "k0b", suggestion_id=ids[0]),  # latest decision wins
        Feedback("a", "edit", "k1", suggestion_id=ids[1], label="dog"),  # label changed
        Feedback("a", "edit", "k2", suggestion_id=ids[2], region=Box(2, 2, 9, 9)),  # moved
        Feedback("a", "edit", "k3", suggestion_id=ids[3], label="cat", region=Box(3, 3, 8, 8)),
        Feedback("a", "skip", "k4", suggestion_id=ids[4]),  # says nothing
        Feedback("a", "accept", "k5", region=box, label="cat"),  # item-level: ignored
    ]
    for fb in decisions:
        store.record_feedback(fb)
    history = sorted(routing.feedback_history(store), key=lambda o: -o.score)
    assert history == [
        Outcome("cat", 0.9, True),
        Outcome("cat", 0.8, False),
        Outcome("cat", 0.7, False),
        Outcome("cat", 0.6, True),  # an edit that changed nothing
    ]
    report = routing.calibrate_from_store(store, 0.98, min_count=2)
    assert report.labels["cat"].threshold == pytest.approx(0.9)
    assert routing.feedback_history(store, model_version="v2") == []


def test_chained_predictions_route_and_filter_by_their_combined_version(store: Store) -> None:
    """A detector + segmenter prediction carries a combined version no suggestion has."""
    store.add_items([Item("chain", "image", uri="/x/chain.jpg")], [None])
    made = (
        Suggestion("cat", 0.95, Box(0, 0, 5, 5), "det", "det-v1"),
        Suggestion("cat", 0.95, Box(0, 0, 5, 5), "seg", "seg-v1", parent_index=0),
    )
    combined = Prediction("chain", "det+seg", "det+seg-v1", made, np.zeros((2, 0), np.float32))
    store.save_predictions([combined], [0.5])
    lease = queue.next_item(
        store, "a", lease_seconds=60, label="cat", label_threshold=0.5, model_version="det+seg-v1"
    )
    assert lease is not None and lease.item_id == "chain"
    queue.release(store, "chain", "a")
    result = routing.route_suggestions(store, CONFIG, model_version="det+seg-v1")
    assert (result.suggestions, result.items) == (2, 1)
    assert _statuses(store, "chain") == ["machine_accepted", "machine_accepted"]
