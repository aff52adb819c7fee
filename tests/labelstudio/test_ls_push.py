"""`labelengine push` against a real Label Studio 1.23 (see tests/lstudio.py).

Label Studio runs with prediction validation on, so every pushed prediction also
passes Label Studio's own checker, and with a 4 MiB request cap so one over-size
task is cheap to make.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import requests
from PIL import Image
from typer.testing import CliRunner

from engine.cli import app
from engine.config import load_settings
from engine.imaging.masks import mask_to_region
from engine.labelstudio.client import LabelStudioClient
from engine.labelstudio.push import ChunkResult, MediaMapping, PushReport, push_predictions
from engine.store import Store
from engine.types import Box, Item, Prediction, Suggestion

if TYPE_CHECKING:
    from lstudio import LiveLabelStudio

pytest_plugins = ["lstudio"]  # the session-wide Label Studio fixtures
pytestmark = pytest.mark.labelstudio

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image">
    <Label value="person"/><Label value="bus"/>
  </RectangleLabels>
  <BrushLabels name="brush" toName="image"><Label value="person"/></BrushLabels>
</View>"""
W, H = 40, 30


def _seed(store: Store, folder: Path, suggestions: dict[str, list[Suggestion]]) -> None:
    """One small PNG per image item under ``folder``, a text item, predictions of ``v1``."""
    folder.mkdir(parents=True)
    items = [Item("txt", "text", text="no image here")]
    for item_id in suggestions:
        Image.new("RGB", (W, H), (len(item_id) * 20, 90, 30)).save(folder / f"{item_id}.png")
        items.append(Item(item_id, "image", uri=str(folder / f"{item_id}.png")))
    store.add_items(items, [None] * len(items))
    predictions = [
        Prediction(i, "m", "v1", tuple(s), np.zeros((len(s), 0), np.float32))
        for i, s in [*suggestions.items(), ("txt", [])]
    ]
    store.save_predictions(predictions, [0.1 * n for n in range(len(predictions))])


def _s(label: str, region: Box | object) -> Suggestion:
    return Suggestion(label, 0.8, region, "m", "v1")  # type: ignore[arg-type]


def _predictions_by_item(client: LabelStudioClient, project_id: int) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for task in client.iter_tasks(project_id):
        assert task.data["item_id"] not in found, f"two tasks for {task.data['item_id']}"
        found[task.data["item_id"]] = client.predictions_of(task.task_id)
    return found


def test_push_resumes_after_a_crash_and_never_duplicates(
    label_studio: LiveLabelStudio, label_studio_media_root: Path, store: Store
) -> None:
    folder = label_studio_media_root / uuid.uuid4().hex[:8]
    disc = np.hypot(*np.mgrid[:H, :W] - np.array([[[15]], [[20]]])) <= 8
    plan = {
        "img0": [_s("person", Box(1, 1, 10, 20)), _s("bus", Box(12, 2, 39, 29))],
        "img1": [_s("person", Box(5, 5, 15, 15)), _s("car", Box(0, 0, 4, 4))],  # car: unmapped
        "img2": [],  # nothing found: an empty prediction still lands (and is not re-sent)
        "img3": [_s("person", mask_to_region(disc))],
        "img4": [_s("bus", Box(2, 3, 20, 25))],
        "img5": [_s("bus", Box(0, 0, 40, 30))],
    }
    expected_results = {"img0": 2, "img1": 1, "img2": 0, "img3": 1, "img4": 1, "img5": 1}
    _seed(store, folder, plan)
    media = MediaMapping(root=label_studio_media_root)
    with LabelStudioClient(*label_studio) as client:
        project_id = int(client.create_project("push resume", CONFIG)["id"])
        client.add_local_files_storage(project_id, str(folder))
        # img4 already has a task (imported earlier by someone): push must find it.
        img4_value = media.value_for(str(folder / "img4.png"))
        (img4_task,) = client.import_tasks(
            project_id, [{"data": {"image": img4_value, "item_id": "img4"}}]
        )

        def crash(chunk: ChunkResult, _report: PushReport) -> None:
            raise KeyboardInterrupt(f"killed after request {chunk.index}")

        with pytest.raises(KeyboardInterrupt):
            push_predictions(store, client, project_id, chunk_size=2, media=media, on_chunk=crash)
        first = _predictions_by_item(client, project_id)
        assert sorted(k for k, v in first.items() if v) == ["img0", "img1"]

        report = push_predictions(store, client, project_id, chunk_size=2, media=media)
        assert (report.already, report.pushed, report.failed, report.skipped) == (2, 4, 0, 1)
        assert sorted((c.kind, c.n_items) for c in report.chunks) == [
            ("predictions", 1), ("tasks", 1), ("tasks", 2)]  # fmt: skip
        landed = _predictions_by_item(client, project_id)
        assert sorted(landed) == sorted(plan)
        for item_id, predictions in landed.items():
            (prediction,) = predictions
            assert prediction["model_version"] == "v1"
            assert len(prediction["result"]) == expected_results[item_id], item_id
        brush = landed["img3"][0]["result"][0]
        assert brush["type"] == "brushlabels" and brush["value"]["brushlabels"] == ["person"]
        assert landed["img4"][0]["task"] == img4_task

        listed = [(t.task_id, t.model_versions) for t in client.iter_tasks(project_id)]
        paged = [(t.task_id, t.model_versions) for t in client.iter_tasks(project_id, page_size=4)]
        assert paged == listed and len(listed) == 6  # stable pages, no task twice or lost
        assert {v for _, versions in listed for v in versions} == {"v1"}

        again = push_predictions(store, client, project_id, chunk_size=2, media=media)
        assert (again.already, again.pushed, again.chunks) == (6, 0, [])
        assert {k: len(v) for k, v in _predictions_by_item(client, project_id).items()} == {
            k: 1 for k in plan
        }
        job = store.get_job(again.job_id)
        assert (job.kind, job.state, job.done, job.skipped, job.total) == (
            "push", "succeeded", 6, 1, 7)  # fmt: skip

        # Label Studio serves the pushed media value back: the mapping is a real path.
        task = client.get_task(img4_task)
        served = requests.get(
            label_studio.url + task["data"]["image"],
            headers={"Authorization": f"Token {label_studio.token}"},
            timeout=30,
        )
        assert served.status_code == 200
        assert served.content == (folder / "img4.png").read_bytes()


def test_a_refused_task_is_recorded_and_the_others_land(
    label_studio: LiveLabelStudio,
    label_studio_media_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LABELENGINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    store = Store(load_settings().resolved_database_url)
    from lstudio import LS_MAX_REQUEST_BYTES

    noise = np.random.default_rng(0).random((1400, 1400)) < 0.5  # brush RLE ~8 MB of JSON
    assert LS_MAX_REQUEST_BYTES < 8 * 1024**2  # so its one request is over the cap
    plan = {f"ok{i}": [_s("bus", Box(i, i, 20 + i, 25))] for i in range(5)}
    plan["huge"] = [_s("person", mask_to_region(noise))]
    folder = label_studio_media_root / uuid.uuid4().hex[:8]
    _seed(store, folder, plan)
    with LabelStudioClient(*label_studio) as client:
        project_id = int(client.create_project("push refused", CONFIG)["id"])
    args = ["push", "--label-studio-url", label_studio.url, "--project", str(project_id)]
    args += ["--media-root", str(label_studio_media_root)]

    # Items go in id order: [huge, ok0] is one request; Label Studio refuses its body.
    first = CliRunner().invoke(app, [*args, "--chunk-size", "2"])

    assert first.exit_code == 1, first.output
    assert "pushed 4, already in Label Studio 0, failed 2" in first.output, first.output
    assert "refused" in first.output
    with LabelStudioClient(*label_studio) as client:
        assert sorted(_predictions_by_item(client, project_id)) == ["ok1", "ok2", "ok3", "ok4"]
    (job_id,) = {line.split()[1] for line in first.output.splitlines() if line.startswith("job ")}
    errors = {e.item_id: e.message for e in store.job_errors(job_id)}
    assert sorted(errors) == ["huge", "ok0"]
    assert "HTTP 500" in errors["huge"]  # Label Studio's answer (status and body) is kept

    # A 5xx may have landed, so it is not retried blindly; the rerun's scan decides.
    second = CliRunner().invoke(app, [*args, "--chunk-size", "1"])

    assert second.exit_code == 1, second.output
    assert "pushed 1, already in Label Studio 4, failed 1" in second.output, second.output
    with LabelStudioClient(*label_studio) as client:
        landed = _predictions_by_item(client, project_id)
    assert sorted(landed) == [f"ok{i}" for i in range(5)]
    assert all(len(p) == 1 and len(p[0]["result"]) == 1 for p in landed.values())
    assert [e.item_id for e in store.job_errors(job_id)] == ["huge"]


def test_a_chunk_refused_as_invalid_is_halved_so_only_bad_tasks_fail(
    label_studio: LiveLabelStudio, label_studio_media_root: Path, store: Store
) -> None:
    """The project loses its ``bus`` label mid-push: Label Studio's validator refuses the
    next chunk (HTTP 400); halving it lands the person-only tasks and records the others."""
    labels = ["person", "bus"] * 3
    plan = {f"a{i}": [_s(label, Box(1, 1, 20, 20))] for i, label in enumerate(labels)}
    _seed(store, label_studio_media_root / uuid.uuid4().hex[:8], plan)
    person_only = CONFIG.replace('<Label value="bus"/>', "")
    with LabelStudioClient(*label_studio) as client:
        project_id = int(client.create_project("push halves", CONFIG)["id"])

        def edit_project(chunk: ChunkResult, _report: PushReport) -> None:
            if chunk.index == 0:
                client.request(
                    "PATCH", f"/api/projects/{project_id}", json_body={"label_config": person_only}
                )

        report = push_predictions(
            store,
            client,
            project_id,
            chunk_size=3,
            media=MediaMapping(root=label_studio_media_root),
            on_chunk=edit_project,
        )
        landed = _predictions_by_item(client, project_id)
    assert sorted(landed) == ["a0", "a1", "a2", "a4"]  # a1 landed before the edit
    errors = {e.item_id: e.message for e in store.job_errors(report.job_id)}
    assert sorted(errors) == ["a3", "a5"]
    assert all("HTTP 400" in m and "valid labels" in m for m in errors.values())
