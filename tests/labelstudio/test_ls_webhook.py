"""Label Studio's webhook over HTTP on a real store: text annotations (span edits checked
against the text), START_TRAINING, other actions, bad bodies and Label Studio's Basic auth.

Webhook bodies are built the way Label Studio 1.23 sends them (tests/ml_backend.py).
Image annotations: test_ls_webhook_images.py.
"""

from __future__ import annotations

import copy
import time

import pytest
from fastapi.testclient import TestClient
from ml_backend import (
    WEBHOOK_IMAGE_CONFIG,
    WEBHOOK_TEXT_CONFIG,
    counts,
    result_by_id,
    seed,
    shown_results,
    suggestion,
    webhook_event,
)

from engine.config import Settings
from engine.formats.spans import reviewed_spans
from engine.serving.app import create_app
from engine.store import Store
from engine.types import Item, Span

TEXT = "Grace Hopper joined Remington Rand in 1949."


# -- texts ----------------------------------------------------------------------


@pytest.fixture
def text_item(store: Store) -> tuple[Item, list[int]]:
    item = Item("txt-1", "text", text=TEXT)
    ids = seed(
        store,
        item,
        [
            suggestion("PER", 0.95, Span(0, 12, "Grace Hopper")),
            suggestion("ORG", 0.6, Span(20, 29, "Remington")),
        ],
    )
    return item, ids


def test_span_edits_are_validated_against_the_text(
    client: TestClient, store: Store, text_item: tuple[Item, list[int]]
) -> None:
    item, ids = text_item
    results = copy.deepcopy(shown_results(store, item, WEBHOOK_TEXT_CONFIG))
    result_by_id(results, ids[1])["value"].update(start=20, end=34, text="Remington Rand")
    bad = copy.deepcopy(result_by_id(results, ids[0]))
    bad["id"] = "bad-span"
    bad["value"].update(start=40, end=90)
    del bad["value"]["text"]
    event = webhook_event(
        "ANNOTATION_CREATED", 30, [*results, bad], config=WEBHOOK_TEXT_CONFIG, data={"text": TEXT}
    )
    body = client.post("/webhook", json=event).json()
    assert counts(body) == (1, 1, 0, 0, 0, 0, 1)
    assert "'bad-span'" in body["reasons"][0] and "past the end of the text" in body["reasons"][0]
    gold = reviewed_spans(store, "txt-1")
    assert gold is not None
    assert [(s.start, s.end, s.label) for s in gold.spans] == [(0, 12, "PER"), (20, 34, "ORG")]


def test_task_without_our_ids_is_matched_by_its_text(
    client: TestClient, store: Store, text_item: tuple[Item, list[int]]
) -> None:
    span = {
        "id": "hand-1",
        "from_name": "ner",
        "to_name": "text",
        "type": "labels",
        "value": {"start": 38, "end": 42, "text": "1949", "labels": ["ORG"]},
    }
    event = webhook_event(
        "ANNOTATION_CREATED", 31, [span], config=WEBHOOK_TEXT_CONFIG, data={"text": TEXT}
    )
    event["annotation"]["parent_prediction"] = None  # drawn from scratch: nothing was judged
    body = client.post("/webhook", json=event).json()
    assert (body["items"], counts(body)) == (["txt-1"], (0, 0, 0, 0, 1, 0, 0))
    assert {store.get_suggestion(s).status for s in text_item[1]} == {"pending"}
    unknown = webhook_event(
        "ANNOTATION_CREATED", 32, [span], config=WEBHOOK_TEXT_CONFIG, data={"text": "other"}
    )
    skipped = client.post("/webhook", json=unknown).json()
    assert skipped["status"] == "skipped" and "no stored item matches" in skipped["reasons"][0]


# -- training, other actions, bad bodies -----------------------------------------


def test_start_training_queues_a_job_and_returns_at_once(
    settings: Settings, store: Store, auth: dict[str, str]
) -> None:
    app = create_app(settings, store)
    with TestClient(app, headers=auth) as client:
        body = {
            "action": "START_TRAINING",
            "project": {"id": 2, "label_config": WEBHOOK_TEXT_CONFIG},
        }
        started = time.perf_counter()
        response = client.post("/webhook", json=body)
        elapsed_s = time.perf_counter() - started
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "queued" and elapsed_s < 2.0
        job = store.get_job(response.json()["job_id"])
        assert (job.kind, job.config["source"]) == ("train-ner", "store")
        # The worker really runs the job: with nothing reviewed yet it fails at once, saying so.
        assert app.state.launcher.wait(job.job_id, timeout_s=60)
    final = store.get_job(job.job_id)
    assert final.state == "failed" and "no accepted or edited entity span" in (final.message or "")


def test_start_training_on_an_image_project_is_skipped(client: TestClient) -> None:
    body = {"action": "START_TRAINING", "project": {"id": 1, "label_config": WEBHOOK_IMAGE_CONFIG}}
    response = client.post("/webhook", json=body)
    assert response.status_code == 200
    assert response.json()["status"] == "skipped"
    assert response.json()["reasons"] == ["no trainer for image projects yet"]


def test_unknown_actions_are_ignored_and_bad_bodies_are_422(client: TestClient) -> None:
    ignored = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 1}})
    assert (ignored.status_code, ignored.json()["status"]) == (200, "ignored")
    assert ignored.json()["action"] == "PROJECT_UPDATED"
    broken = client.post("/webhook", content=b'{"action": "ANNOTATION_CREATED",')
    assert broken.status_code == 422 and "not JSON" in broken.json()["detail"]
    no_action = client.post("/webhook", json={"annotation": {"id": 1}})
    assert no_action.status_code == 422 and "'action'" in no_action.json()["detail"]
    no_annotation = client.post("/webhook", json={"action": "ANNOTATION_CREATED"})
    assert no_annotation.status_code == 422 and "annotation" in no_annotation.json()["detail"]
    assert client.post("/webhook", json={}, headers={"Authorization": ""}).status_code == 401


def test_label_studio_basic_auth_is_accepted(settings: Settings, store: Store) -> None:
    with TestClient(create_app(settings, store)) as client:
        body = {"action": "PROJECT_UPDATED"}
        basic = client.post("/webhook", json=body, auth=(settings.basic_auth_user, "test-token"))
        assert basic.status_code == 200 and basic.json()["status"] == "ignored"
        wrong = client.post("/webhook", json=body, auth=(settings.basic_auth_user, "nope"))
        assert wrong.status_code == 401
