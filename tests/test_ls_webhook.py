"""Label Studio's webhook over HTTP on a real store: annotations -> feedback, deletes, training.

Webhook bodies are built the way Label Studio 1.23 sends them: the annotation's
results start as the prediction ``engine.labelstudio.results.to_ls_prediction``
produced (result ids ``s<suggestion_id>``), then are kept, moved, dropped or
drawn anew as an annotator would.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from engine.config import Settings
from engine.formats.spans import reviewed_spans
from engine.imaging.masks import decode_rle, mask_to_region
from engine.labelstudio.results import parse_labeling_config, to_ls_prediction
from engine.serving.app import create_app
from engine.store import Store
from engine.types import Box, Item, Mask, Prediction, Span, Suggestion

AUTH = {"Authorization": "Bearer test-token"}
SIZE_PX = (640, 480)  # width, height
IMAGE_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="Cat" predicted_values="cat"/>
    <Label value="Dog" predicted_values="dog"/>
  </RectangleLabels>
</View>"""
MASK_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image"><Label value="Cat"/></BrushLabels>
  <PolygonLabels name="poly" toName="image"><Label value="Cat"/></PolygonLabels>
</View>"""
TEXT_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Labels name="ner" toName="text"><Label value="PER"/><Label value="ORG"/></Labels>
</View>"""
TEXT = "Grace Hopper joined Remington Rand in 1949."


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store), headers=AUTH) as test_client:
        yield test_client


def _suggestion(label: str, score: float, region: Box | Mask | Span | None) -> Suggestion:
    return Suggestion(label, score, region, "test-model", "test-v1")


def _seed(store: Store, item: Item, suggestions: list[Suggestion]) -> list[int]:
    store.add_items([item], [None])
    probs = np.zeros((len(suggestions), 0), dtype=np.float32)
    prediction = Prediction(item.item_id, "test-model", "test-v1", tuple(suggestions), probs)
    store.save_predictions([prediction], [0.5])
    return [r.suggestion_id for r in store.suggestions_for(item.item_id)]


def _shown_results(store: Store, item: Item, config: str) -> list[dict[str, Any]]:
    """What /predict sent Label Studio for the item (shown suggestions, ids s<id>)."""
    records = [r for r in store.suggestions_for(item.item_id) if r.suggestion.score >= 0.25]
    prediction = to_ls_prediction(
        [r.suggestion for r in records],
        parse_labeling_config(config),
        model_version="test-v1",
        image_size_px=SIZE_PX if item.kind == "image" else None,
        suggestion_ids=[r.suggestion_id for r in records],
        text=item.text,
    )
    return prediction["result"]


def _event(
    action: str,
    annotation_id: int,
    results: list[dict[str, Any]],
    *,
    config: str = IMAGE_CONFIG,
    data: dict[str, Any] | None = None,
    updated_at: str = "2025-03-01T10:00:00.000000Z",
    cancelled: bool = False,
) -> dict[str, Any]:
    """A webhook body as Label Studio 1.23 sends it for one annotation."""
    return {
        "action": action,
        "annotation": {
            "id": annotation_id,
            "result": results,
            "was_cancelled": cancelled,
            "ground_truth": False,
            "created_at": "2025-03-01T09:59:00.000000Z",
            "updated_at": updated_at,
            "lead_time": 12.5,
            "prediction": {},
            "result_count": len(results),
            "task": 11,
            "completed_by": 1,
            "parent_prediction": 3,
            "parent_annotation": None,
            "last_action": None,
            "project": 1,
            "updated_by": 1,
        },
        "task": {"id": 11, "data": data or {"image": "/data/upload/1/a.png"}, "project": 1},
        "project": {"id": 1, "title": "cats", "label_config": config, "model_version": "test-v1"},
    }


def _by_id(results: list[dict[str, Any]], suggestion_id: int) -> dict[str, Any]:
    return next(r for r in results if r["id"] == f"s{suggestion_id}")


def _counts(body: dict[str, Any]) -> tuple[int, ...]:
    keys = ("accepted", "edited", "rejected", "skipped", "unlinked", "unseen", "invalid")
    return tuple(body[k] for k in keys)


# -- images ---------------------------------------------------------------------


@pytest.fixture
def image(store: Store) -> tuple[Item, list[int]]:
    item = Item("img-1", "image", uri="/data/a.png")
    ids = _seed(
        store,
        item,
        [
            _suggestion("cat", 0.9, Box(10, 10, 100, 100)),
            _suggestion("cat", 0.8, Box(200, 50, 300, 150)),
            _suggestion("dog", 0.7, Box(400, 300, 500, 400)),
            _suggestion("cat", 0.1, Box(1, 1, 5, 5)),  # under the display threshold
            _suggestion("bird", 0.9, Box(50, 50, 60, 60)),  # a class the project lacks
        ],
    )
    return item, ids


def _annotated(store: Store, item: Item, ids: list[int]) -> list[dict[str, Any]]:
    """Keep the first box, move the second 10 px right, drop the third, draw a new one."""
    results = copy.deepcopy(_shown_results(store, item, IMAGE_CONFIG))
    _by_id(results, ids[1])["value"]["x"] += 10 / SIZE_PX[0] * 100
    results.remove(_by_id(results, ids[2]))
    new = copy.deepcopy(_by_id(results, ids[0]))
    new["id"] = "Xq3kP_w1Zr"
    new["value"].update(x=50.0, y=50.0, width=10.0, height=10.0, rectanglelabels=["Dog"])
    return [*results, new]


def test_created_accepts_edits_rejects_and_keeps_new_regions(
    client: TestClient, store: Store, image: tuple[Item, list[int]]
) -> None:
    item, ids = image
    response = client.post(
        "/webhook", json=_event("ANNOTATION_CREATED", 7, _annotated(store, item, ids))
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["items"]) == ("ok", ["img-1"])
    assert _counts(body) == (1, 1, 1, 0, 1, 2, 0)
    status = {sid: store.get_suggestion(sid).status for sid in ids}
    assert status == {ids[0]: "accepted", ids[1]: "edited", ids[2]: "rejected"} | {
        ids[3]: "pending",
        ids[4]: "pending",
    }
    feedback = {
        r.feedback.client_key.rsplit(":", 1)[1]: r.feedback for r in store.feedback_for("img-1")
    }
    edit = feedback[f"s{ids[1]}"]
    assert edit.action == "edit" and edit.label is None  # only the geometry changed
    assert isinstance(edit.region, Box)
    assert np.allclose(edit.region.box_xyxy, (210, 50, 310, 150), atol=1e-6)
    assert edit.annotator == "labelstudio:1" and edit.model_version == "test-v1"
    drawn = feedback["n0"]
    assert (drawn.action, drawn.suggestion_id, drawn.label) == ("edit", None, "Dog")
    assert isinstance(drawn.region, Box)
    assert np.allclose(drawn.region.box_xyxy, (320, 240, 384, 288))
    assert feedback["item"].action == "accept"
    assert {feedback[f"s{ids[3]}"].action, feedback[f"s{ids[4]}"].action} == {"skip"}
    assert _labeled(store, "img-1")


def _labeled(store: Store, item_id: str) -> bool:
    from sqlalchemy import select

    from engine.store import schema

    with store.engine.connect() as conn:
        query = select(schema.items.c.labeled).where(schema.items.c.item_id == item_id)
        return bool(conn.execute(query).scalar_one())


def test_replaying_a_webhook_records_nothing_new(
    client: TestClient, store: Store, image: tuple[Item, list[int]]
) -> None:
    item, ids = image
    event = _event("ANNOTATION_CREATED", 7, _annotated(store, item, ids))
    first = client.post("/webhook", json=event).json()
    before = [(r.feedback_id, r.feedback.client_key) for r in store.feedback_for("img-1")]
    again = client.post("/webhook", json=event).json()
    assert _counts(again) == _counts(first)
    assert (first["recorded"], again["recorded"], again["withdrawn"]) == (len(before), 0, 0)
    assert [(r.feedback_id, r.feedback.client_key) for r in store.feedback_for("img-1")] == before


def test_update_supersedes_and_an_older_replay_is_ignored(
    client: TestClient, store: Store, image: tuple[Item, list[int]]
) -> None:
    item, ids = image
    created = _event("ANNOTATION_CREATED", 7, _annotated(store, item, ids))
    assert client.post("/webhook", json=created).status_code == 200
    # The annotator restores the dropped box, relabels the first one, deletes the new one.
    results = copy.deepcopy(_shown_results(store, item, IMAGE_CONFIG))
    _by_id(results, ids[0])["value"]["rectanglelabels"] = ["Dog"]
    updated = _event("ANNOTATION_UPDATED", 7, results, updated_at="2025-03-01T10:05:00Z")
    body = client.post("/webhook", json=updated).json()
    assert _counts(body) == (2, 1, 0, 0, 0, 2, 0)
    assert body["withdrawn"] == body["recorded"] + 1  # the old version had one more: the drawn box
    status = [store.get_suggestion(sid).status for sid in ids[:3]]
    assert status == ["edited", "accepted", "accepted"]
    feedback = store.feedback_for("img-1")
    assert len({r.feedback.client_key.split(":v")[1][:12] for r in feedback}) == 1  # one version
    relabel = next(r.feedback for r in feedback if r.feedback.suggestion_id == ids[0])
    assert (relabel.action, relabel.label, relabel.region) == ("edit", "Dog", None)  # box kept
    stale = client.post("/webhook", json=created).json()  # a late retry of the first version
    assert stale["status"] == "skipped" and stale["recorded"] == 0
    assert "older than the version recorded" in stale["reasons"][0]
    assert [store.get_suggestion(sid).status for sid in ids[:3]] == status


def test_deleting_the_annotation_withdraws_its_feedback(
    client: TestClient, store: Store, image: tuple[Item, list[int]]
) -> None:
    item, ids = image
    created = client.post(
        "/webhook", json=_event("ANNOTATION_CREATED", 7, _annotated(store, item, ids))
    )
    other = _event("ANNOTATION_CREATED", 8, _shown_results(store, item, IMAGE_CONFIG))
    other["annotation"]["completed_by"] = 2
    assert client.post("/webhook", json=other).json()["accepted"] == 3
    deleted = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 8}], "project": {"id": 1}}
    body = client.post("/webhook", json=deleted).json()
    assert (body["status"], body["withdrawn"]) == ("ok", 6)  # 3 accepts, 2 unseen, the item
    assert {r.feedback.annotator for r in store.feedback_for("img-1")} == {"labelstudio:1"}
    # Annotation 7's decisions are the latest again; deleting it too leaves nothing judged.
    assert [store.get_suggestion(s).status for s in ids[:3]] == ["accepted", "edited", "rejected"]
    deleted["annotations"] = [{"id": 7}]
    assert client.post("/webhook", json=deleted).json()["withdrawn"] == created.json()["recorded"]
    assert store.feedback_for("img-1") == []
    assert {store.get_suggestion(s).status for s in ids} == {"pending"}
    assert not _labeled(store, "img-1")
    assert store.count_predictions() == 1 and len(store.suggestions_for("img-1")) == 5


def test_cancelled_annotation_is_a_skip(
    client: TestClient, store: Store, image: tuple[Item, list[int]]
) -> None:
    item, ids = image
    results = _shown_results(store, item, IMAGE_CONFIG)
    body = client.post(
        "/webhook", json=_event("ANNOTATION_CREATED", 9, results, cancelled=True)
    ).json()
    assert _counts(body) == (0, 0, 0, 1, 0, 0, 0)
    [record] = store.feedback_for("img-1")
    assert (record.feedback.action, record.feedback.suggestion_id) == ("skip", None)
    assert not _labeled(store, "img-1")
    assert {store.get_suggestion(s).status for s in ids} == {"pending"}


def test_masks_compare_brush_and_polygon_parts(client: TestClient, store: Store) -> None:
    pixels = np.zeros((SIZE_PX[1], SIZE_PX[0]), dtype=bool)
    pixels[100:180, 50:170] = True
    pixels[300:340, 400:460] = True  # a second part: a second polygon
    item = Item("img-2", "image", uri="/data/b.png")
    [sid] = _seed(store, item, [_suggestion("cat", 0.9, mask_to_region(pixels))])
    results = _shown_results(store, item, MASK_CONFIG)
    assert sorted(r["id"] for r in results) == [f"s{sid}", f"s{sid}.1", f"s{sid}.2"]
    kept = client.post(
        "/webhook", json=_event("ANNOTATION_CREATED", 20, results, config=MASK_CONFIG)
    )
    assert _counts(kept.json()) == (1, 0, 0, 0, 0, 0, 0)
    erased = pixels.copy()
    erased[300:340] = False  # the annotator erased the second part with the brush
    brush = copy.deepcopy(_by_id(results, sid))
    from engine.labelstudio.brush_rle import mask_to_brush_rle

    brush["value"]["rle"] = mask_to_brush_rle(erased)
    update = _event(
        "ANNOTATION_UPDATED", 20, [brush], config=MASK_CONFIG, updated_at="2025-03-02T00:00:00Z"
    )
    assert _counts(client.post("/webhook", json=update).json()) == (0, 1, 0, 0, 0, 0, 0)
    edit = next(r.feedback for r in store.feedback_for("img-2") if r.feedback.suggestion_id == sid)
    assert edit.action == "edit" and isinstance(edit.region, Mask)
    assert np.array_equal(decode_rle(edit.region.mask_rle, *pixels.shape), erased)


# -- texts ----------------------------------------------------------------------


@pytest.fixture
def text_item(store: Store) -> tuple[Item, list[int]]:
    item = Item("txt-1", "text", text=TEXT)
    ids = _seed(
        store,
        item,
        [
            _suggestion("PER", 0.95, Span(0, 12, "Grace Hopper")),
            _suggestion("ORG", 0.6, Span(20, 29, "Remington")),
        ],
    )
    return item, ids


def test_span_edits_are_validated_against_the_text(
    client: TestClient, store: Store, text_item: tuple[Item, list[int]]
) -> None:
    item, ids = text_item
    results = copy.deepcopy(_shown_results(store, item, TEXT_CONFIG))
    _by_id(results, ids[1])["value"].update(start=20, end=34, text="Remington Rand")
    bad = copy.deepcopy(_by_id(results, ids[0]))
    bad["id"] = "bad-span"
    bad["value"].update(start=40, end=90)
    del bad["value"]["text"]
    event = _event(
        "ANNOTATION_CREATED", 30, [*results, bad], config=TEXT_CONFIG, data={"text": TEXT}
    )
    body = client.post("/webhook", json=event).json()
    assert _counts(body) == (1, 1, 0, 0, 0, 0, 1)
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
    event = _event("ANNOTATION_CREATED", 31, [span], config=TEXT_CONFIG, data={"text": TEXT})
    event["annotation"]["parent_prediction"] = None  # drawn from scratch: nothing was judged
    body = client.post("/webhook", json=event).json()
    assert (body["items"], _counts(body)) == (["txt-1"], (0, 0, 0, 0, 1, 0, 0))
    assert {store.get_suggestion(s).status for s in text_item[1]} == {"pending"}
    unknown = _event("ANNOTATION_CREATED", 32, [span], config=TEXT_CONFIG, data={"text": "other"})
    skipped = client.post("/webhook", json=unknown).json()
    assert skipped["status"] == "skipped" and "no stored item matches" in skipped["reasons"][0]


# -- training, other actions, bad bodies -----------------------------------------


def test_start_training_queues_a_job_and_returns_at_once(settings: Settings, store: Store) -> None:
    app = create_app(settings, store)
    with TestClient(app, headers=AUTH) as client:
        body = {"action": "START_TRAINING", "project": {"id": 2, "label_config": TEXT_CONFIG}}
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
    body = {"action": "START_TRAINING", "project": {"id": 1, "label_config": IMAGE_CONFIG}}
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


def test_a_chained_prediction_is_judged_whole(client: TestClient, store: Store) -> None:
    """Boxes carry the detector's version, masks the segmenter's, the prediction a combined
    one: every suggestion of the prediction the annotator saw is judged."""
    config = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image"><Label value="Cat" predicted_values="cat"/>
  </RectangleLabels>
  <BrushLabels name="brush" toName="image"><Label value="Cat" predicted_values="cat"/>
  </BrushLabels>
</View>"""
    item = Item("chain-1", "image", uri="/data/upload/1/a.png")
    store.add_items([item], [None])
    mask = np.zeros((SIZE_PX[1], SIZE_PX[0]), dtype=bool)
    mask[100:200, 100:220] = True
    made = (
        Suggestion("cat", 0.9, Box(90, 90, 230, 210), "det", "det-v1"),
        Suggestion("cat", 0.8, Box(300, 300, 400, 400), "det", "det-v1"),
        Suggestion("cat", 0.85, mask_to_region(mask), "seg", "seg-v1", parent_index=0),
    )
    store.save_predictions(
        [Prediction(item.item_id, "det+seg", "det+seg-v1", made, np.zeros((3, 0), np.float32))],
        [0.5],
    )
    box_a, box_b, brush = (r.suggestion_id for r in store.suggestions_for(item.item_id))
    results = _shown_results(store, item, config)
    kept = [r for r in results if r["id"] == f"s{box_a}"]  # box b and the mask dropped
    response = client.post("/webhook", json=_event("ANNOTATION_CREATED", 7, kept, config=config))
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["rejected"]) == (1, 2)
    statuses = {r.suggestion_id: r.status for r in store.suggestions_for(item.item_id)}
    assert statuses == {box_a: "accepted", box_b: "rejected", brush: "rejected"}
