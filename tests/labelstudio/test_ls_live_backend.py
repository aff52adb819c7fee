"""Label Studio 1.23 calling the engine as its ML backend, both for real, over loopback.

The engine runs as ``python -m engine.cli serve`` (uvicorn, real yolo11n / LiteMedSAM
weights, the bundled spaCy tagger); Label Studio (tests/lstudio.py) serves the sample
photos as local files, and the engine fetches them back from Label Studio with its API
key, as in production. Needs the weights (`labelengine models pull`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from engine.config import load_settings, model_specs
from engine.labelstudio.client import LabelStudioClient
from engine.labelstudio.connect import ConnectReport, basic_auth_header, connect_engine
from engine.labelstudio.push import MediaMapping

if TYPE_CHECKING:
    from lstudio import LiveLabelStudio

pytest_plugins = ["lstudio"]  # the session-wide Label Studio fixtures
pytestmark = pytest.mark.labelstudio

ENGINE_TOKEN = "engine-live-token"
IMAGE_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image">
    <Label value="person"/><Label value="bus"/>
  </RectangleLabels>
  <BrushLabels name="brush" toName="image"><Label value="person"/><Label value="bus"/></BrushLabels>
  <KeyPointLabels name="kp" toName="image" smart="true">
    <Label value="person"/><Label value="bus"/>
  </KeyPointLabels>
</View>"""
TEXT_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Labels name="ner" toName="text">
    <Label value="Person" predicted_values="PERSON,PER"/>
    <Label value="Organization" predicted_values="ORG"/>
    <Label value="Place" predicted_values="GPE,LOC"/>
  </Labels>
</View>"""
TEXT = "Grace Hopper worked for Remington Rand in Philadelphia before joining the Navy."


def _weights_present() -> bool:
    from engine.assets import asset_status

    settings = load_settings()
    specs = model_specs(settings.config_dir)
    names = (settings.default_detector, settings.interactive_model)
    statuses = [asset_status(settings.resolved_models_dir, specs[n]).state for n in names]
    return all(state in ("present", "none") for state in statuses)


@pytest.fixture(scope="module")
def engine_url(
    label_studio: LiveLabelStudio,
    label_studio_media_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The engine, served by uvicorn in its own process group; its base URL."""
    from lstudio import free_port

    if not _weights_present():
        pytest.fail("model weights missing: run `labelengine models pull`")
    data_dir = tmp_path_factory.mktemp("engine-live")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELENGINE_")}
    env.update(
        LABELENGINE_DATA_DIR=str(data_dir),
        LABELENGINE_API_TOKEN=ENGINE_TOKEN,
        LABELENGINE_DATA_ROOTS=f'["{label_studio_media_root}"]',
        LABELENGINE_HOST="127.0.0.1",
        LABELENGINE_PORT=str(port),
        LABELENGINE_LABEL_STUDIO_URL=label_studio.url,
        LABELENGINE_LABEL_STUDIO_API_KEY=label_studio.token,
        PYTHONUNBUFFERED="1",
    )
    log_path = data_dir / "engine.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while time.monotonic() - started < 240:
            if process.poll() is not None:
                break
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            process.terminate()
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"engine did not start (exit {process.returncode}):\n{tail}")
        sys.stderr.write(f"\nengine: up in {time.monotonic() - started:.1f} s at {url}\n")
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        sys.stderr.write(log_path.read_text(errors="replace")[-3000:])


def _connect(client: LabelStudioClient, project_id: int, engine_url: str) -> ConnectReport:
    report = connect_engine(
        client, project_id, engine_url, user="labelengine", token=ENGINE_TOKEN, interactive=True
    )
    assert report.backend_state in ("CO", "Connected"), report
    return report


def _connect_cli(
    label_studio: LiveLabelStudio, project_id: int, engine_url: str, *, exit_code: int = 0
) -> str:
    """``labelengine connect`` as a user runs it; its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABELENGINE_", "LABEL_"))}
    env.update(LABELENGINE_API_TOKEN=ENGINE_TOKEN, LABEL_STUDIO_API_KEY=label_studio.token)
    argv = [sys.executable, "-m", "engine.cli", "connect", "--project", str(project_id)]
    argv += ["--label-studio-url", label_studio.url, "--engine-url", engine_url]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == exit_code, done.stdout + done.stderr
    return done.stdout


def _check_connected(client: LabelStudioClient, project_id: int, engine_url: str) -> int:
    """One backend and one webhook for the engine, the webhook with our Basic credentials;
    a second connect reuses both. Returns the backend id."""
    again = _connect(client, project_id, engine_url)
    assert (again.backend, again.webhook) == ("updated", "unchanged"), again
    backends = client.list_ml_backends(project_id)
    assert [b["id"] for b in backends] == [again.backend_id], backends
    hooks = [w for w in client.list_webhooks(project_id) if w["url"] == f"{engine_url}/webhook"]
    assert [w["id"] for w in hooks] == [again.webhook_id], hooks
    assert hooks[0]["headers"] == {"Authorization": basic_auth_header("labelengine", ENGINE_TOKEN)}
    assert hooks[0]["is_active"] and hooks[0]["send_payload"], hooks[0]
    # Label Studio's own webhook had no headers: without them our /webhook refuses it.
    bare = requests.post(f"{engine_url}/webhook", json={"action": "PROJECT_UPDATED"}, timeout=10)
    assert bare.status_code == 401, bare.text
    signed = requests.post(
        f"{engine_url}/webhook",
        json={"action": "PROJECT_UPDATED"},
        headers=hooks[0]["headers"],
        timeout=10,
    )
    assert signed.status_code == 200 and signed.json()["status"] == "ignored", signed.text
    return again.backend_id


def _setup_version(engine_url: str, config: str) -> str:
    answer = requests.post(
        f"{engine_url}/setup",
        json={"project": "1.0", "schema": config},
        auth=("labelengine", ENGINE_TOKEN),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["model_version"])


def _statuses(engine_url: str, item_id: str) -> dict[int, str]:
    answer = requests.get(
        f"{engine_url}/items/{item_id}/suggestions",
        params={"min_score": 0.0},
        headers={"Authorization": f"Bearer {ENGINE_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return {int(s["suggestion_id"]): str(s["status"]) for s in answer.json()}


def _wait_for_statuses(
    engine_url: str, item_id: str, expected: dict[int, str], timeout_s: float = 30.0
) -> float:
    """Poll the engine until its suggestions have these statuses; seconds it took."""
    started = time.monotonic()
    while True:
        now = _statuses(engine_url, item_id)
        if now == expected:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"after {timeout_s:.0f} s: expected {expected}, engine has {now}")
        time.sleep(0.2)


def _moved(result: dict[str, Any], by_pct: float = 3.0) -> dict[str, Any]:
    value = dict(result["value"])
    fits = value["x"] + value["width"] + by_pct <= 100
    value["x"] = value["x"] + by_pct if fits else value["x"] - by_pct
    return {**result, "value": value}


def _annotation_becomes_feedback(
    client: LabelStudioClient, engine_url: str, task_id: int, photo: Path
) -> None:
    """An annotation made in Label Studio (one predicted region kept, one box moved, the
    rest dropped) reaches the engine through the connected webhook as accept / edit /
    reject; deleting it withdraws the feedback."""
    (prediction,) = client.predictions_of(task_id)
    parts: dict[str, list[dict[str, Any]]] = {}
    for result in prediction["result"]:
        parts.setdefault(str(result["id"]), []).append(result)
    boxed = [rid for rid, rs in parts.items() if any(r["type"] == "rectanglelabels" for r in rs)]
    assert len(boxed) >= 3 and all(rid.startswith("s") for rid in parts), parts.keys()
    kept, moved = boxed[0], boxed[1]
    box = next(r for r in parts[moved] if r["type"] == "rectanglelabels")
    item_id = hashlib.sha256(photo.read_bytes()).hexdigest()[:24]
    before = _statuses(engine_url, item_id)
    shown = {int(rid[1:]) for rid in parts}
    assert shown <= set(before) and set(before.values()) == {"pending"}, before

    annotation = client.request(
        "POST",
        f"/api/tasks/{task_id}/annotations",
        json_body={
            "result": [*parts[kept], _moved(box)],
            "parent_prediction": prediction["id"],
            "lead_time": 4.2,
        },
    )
    expected = {sid: "rejected" if sid in shown else "pending" for sid in before}
    expected |= {int(kept[1:]): "accepted", int(moved[1:]): "edited"}
    feedback_s = _wait_for_statuses(engine_url, item_id, expected)

    client.request("DELETE", f"/api/annotations/{int(annotation['id'])}")
    withdraw_s = _wait_for_statuses(engine_url, item_id, before)
    sys.stderr.write(
        f"annotation -> feedback: {feedback_s:.2f} s, deletion -> withdrawn: {withdraw_s:.2f} s "
        f"({len(shown)} shown suggestions)\n"
    )


def test_image_project_retrieves_boxes_and_segments_a_click(
    label_studio: LiveLabelStudio, label_studio_media_root: Path, engine_url: str
) -> None:
    from engine.cli.samples import write_samples

    folder = label_studio_media_root / uuid.uuid4().hex[:8]
    photos = {p.name: p for p in write_samples(folder)}
    media = MediaMapping(root=label_studio_media_root)
    with LabelStudioClient(*label_studio) as client:
        project_id = int(client.create_project("engine as backend", IMAGE_CONFIG)["id"])
        client.add_local_files_storage(project_id, str(folder))
        names = ["bus.jpg", "zidane.jpg"]
        task_ids = client.import_tasks(
            project_id, [{"data": {"image": media.value_for(str(photos[n]))}} for n in names]
        )
        printed = _connect_cli(label_studio, project_id, engine_url)
        assert "created" in printed and "/webhook" in printed, printed
        backend_id = _check_connected(client, project_id, engine_url)

        started = time.monotonic()
        client.retrieve_predictions(project_id, task_ids)
        retrieve_s = time.monotonic() - started

        version = _setup_version(engine_url, IMAGE_CONFIG)
        labels: dict[str, set[str]] = {}
        for name, task_id in zip(names, task_ids, strict=True):
            predictions = client.predictions_of(task_id)
            assert len(predictions) == 1, (name, predictions)
            (prediction,) = predictions
            assert prediction["model_version"] == version
            boxes = [r for r in prediction["result"] if r["type"] == "rectanglelabels"]
            assert boxes, (name, prediction)
            for region in boxes:
                value = region["value"]
                assert 0 <= value["x"] <= 100 and 0 < value["width"] <= 100
                assert (region["original_width"], region["original_height"]) != (0, 0)
            labels[name] = {label for r in boxes for label in r["value"]["rectanglelabels"]}
        assert {"bus", "person"} <= labels["bus.jpg"]
        assert "person" in labels["zidane.jpg"]
        sys.stderr.write(f"\nretrieve predictions, 2 tasks: {retrieve_s:.1f} s\n")

        # Retrieving again is a no-op: the tasks hold a prediction of the current version.
        client.retrieve_predictions(project_id, task_ids)
        assert [len(client.predictions_of(t)) for t in task_ids] == [1, 1]

        _annotation_becomes_feedback(client, engine_url, task_ids[0], photos[names[0]])

        # A smart keypoint on the bus, as the editor sends it.
        click = {
            "id": "click1",
            "from_name": "kp",
            "to_name": "image",
            "type": "keypointlabels",
            "origin": "manual",
            "is_positive": True,
            "original_width": 810,
            "original_height": 1080,
            "image_rotation": 0,
            "value": {"x": 50.0, "y": 50.0, "width": 0.6, "keypointlabels": ["bus"]},
        }
        started = time.monotonic()
        answer = client.interactive_annotating(backend_id, task_ids[0], {"result": [click]})
        click_s = time.monotonic() - started
        assert "errors" not in answer, answer
        brushes = [r for r in answer["data"]["result"] if r["type"] == "brushlabels"]
        assert len(brushes) == 1, answer
        assert brushes[0]["value"]["brushlabels"] == ["bus"]
        assert brushes[0]["value"]["format"] == "rle" and len(brushes[0]["value"]["rle"]) > 100
        sys.stderr.write(f"interactive click through Label Studio: {click_s:.2f} s\n")


def test_text_project_retrieves_entity_spans(
    label_studio: LiveLabelStudio, engine_url: str
) -> None:
    from lstudio import free_port

    with LabelStudioClient(*label_studio) as client:
        project_id = int(client.create_project("engine spans", TEXT_CONFIG)["id"])
        (task_id,) = client.import_tasks(project_id, [{"data": {"text": TEXT}}])
        nobody = f"http://127.0.0.1:{free_port()}"
        refused = " ".join(_connect_cli(label_studio, project_id, nobody, exit_code=2).split())
        assert "error:" in refused and "HTTP 400" in refused and nobody in refused, refused
        assert client.list_ml_backends(project_id) == []
        _connect(client, project_id, engine_url)
        client.retrieve_predictions(project_id, [task_id])
        (prediction,) = client.predictions_of(task_id)
    assert prediction["model_version"] == _setup_version(engine_url, TEXT_CONFIG)
    spans = [r["value"] for r in prediction["result"]]
    assert spans and all(r["type"] == "labels" for r in prediction["result"])
    for span in spans:
        assert TEXT[span["start"] : span["end"]] == span["text"]
    found = {(s["text"], s["labels"][0]) for s in spans}
    assert ("Grace Hopper", "Person") in found, found
