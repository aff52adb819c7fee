"""Exports from a real store: COCO (pycocotools), YOLO (ultralytics' checker), LS, NDJSON."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import update

from engine.formats.export import EXPORT_FORMATS, export
from engine.imaging.masks import mask_to_region
from engine.store import Store, schema
from engine.types import Box, Feedback, Item, Prediction, Span, Suggestion

WIDTH, HEIGHT = 64, 48
TEXT = "Grace Hopper joined Remington Rand."


def _mask() -> np.ndarray:
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    return (yy - 20) ** 2 + (xx - 30) ** 2 <= 9**2


def _image(path: Path, *, rotate_exif: bool = False) -> str:
    pixels = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if rotate_exif:  # stored 64x48, shown (and labeled) 48x64
        exif = Image.Exif()
        exif[0x0112] = 6
        image.save(path, exif=exif)
    else:
        image.save(path)
    return str(path)


def _prediction(item_id: str, suggestions: list[Suggestion]) -> Prediction:
    probs = np.zeros((len(suggestions), 0), np.float32)
    return Prediction(item_id, "yolo", "v1", tuple(suggestions), probs)


@pytest.fixture
def filled(store: Store, tmp_path: Path) -> Store:
    """img-a: accepted box, edited box, rejected box, pending box, accepted mask, a drawn box.
    img-b: only pending. img-c: reviewed, all rejected (a background). txt-1: accepted span.
    img-bad: reviewed, but its file is corrupt."""
    items = [
        Item("img-a", "image", uri=_image(tmp_path / "a.png")),
        Item("img-b", "image", uri=_image(tmp_path / "b.png")),
        Item("img-c", "image", uri=_image(tmp_path / "c.jpg", rotate_exif=True)),
        Item("txt-1", "text", text=TEXT),
        Item("img-bad", "image", uri=str(tmp_path / "bad.png")),
    ]
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    store.add_items(items, [None] * len(items))
    box = lambda x: Box(x, 2, x + 10, 12)  # noqa: E731
    suggest = lambda label, score, region: Suggestion(label, score, region, "yolo", "v1")  # noqa: E731
    a = [suggest("car", 0.9, box(1)), suggest("car", 0.8, box(20)), suggest("dog", 0.7, box(40)),
         suggest("car", 0.3, box(5)), suggest("cell", 0.95, mask_to_region(_mask()))]  # fmt: skip
    store.save_predictions(
        [
            _prediction("img-a", a),
            _prediction("img-b", [suggest("bus", 0.6, box(3)), suggest("bus", 0.2, box(30))]),
            _prediction("img-c", [suggest("car", 0.5, box(2))]),
            _prediction("txt-1", [suggest("PER", 0.9, Span(0, 12, "Grace Hopper"))]),
        ],
        [0.7, 0.4, 0.1, 0.5],
    )
    ids = [r.suggestion_id for r in store.suggestions_for("img-a")]
    (c_id,) = [r.suggestion_id for r in store.suggestions_for("img-c")]
    (b_id, _) = [r.suggestion_id for r in store.suggestions_for("img-b")]
    (t_id,) = [r.suggestion_id for r in store.suggestions_for("txt-1")]
    decisions = [
        Feedback("img-a", "accept", "k1", suggestion_id=ids[0]),
        Feedback("img-a", "edit", "k2", suggestion_id=ids[1], region=Box(21, 3, 35, 20)),
        Feedback("img-a", "reject", "k3", suggestion_id=ids[2]),
        Feedback("img-a", "accept", "k5", suggestion_id=ids[4]),
        Feedback("img-a", "edit", "k6", label="person", region=Box(50, 30, 60, 47)),
        Feedback("img-c", "reject", "k7", suggestion_id=c_id),
        Feedback("img-c", "reject", "k8"),
        Feedback("txt-1", "accept", "k9", suggestion_id=t_id),
        Feedback("img-bad", "reject", "k10"),
    ]
    for fb in decisions:
        store.record_feedback(fb)
    with store.engine.begin() as conn:  # an auto-accept policy passed img-b's first box
        conn.execute(
            update(schema.suggestions)
            .where(schema.suggestions.c.suggestion_id == b_id)
            .values(status="machine_accepted")
        )
    return store


def test_coco_loads_in_pycocotools_and_gives_the_mask_back(filled: Store, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    report = export(filled, "coco", tmp_path / "coco")
    coco = COCO(str(report.files[0]))
    by_item = {img["item_id"]: img for img in coco.dataset["images"]}
    assert set(by_item) == {"img-a", "img-b", "img-c"}  # text item skipped, reported
    assert any("txt-1" in message for message in report.skipped)
    assert any(m.startswith("img-bad") and "unreadable image" in m for m in report.skipped)
    assert (by_item["img-a"]["width"], by_item["img-a"]["height"]) == (WIDTH, HEIGHT)
    assert (by_item["img-c"]["width"], by_item["img-c"]["height"]) == (HEIGHT, WIDTH)  # EXIF
    names = {c["name"]: c["id"] for c in coco.dataset["categories"]}
    assert set(names) == {"bus", "car", "cell", "person"}
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[by_item["img-a"]["id"]]))
    boxes = sorted((coco.cats[a["category_id"]]["name"], tuple(a["bbox"])) for a in anns)
    assert boxes == [
        ("car", (1.0, 2.0, 10.0, 10.0)),
        ("car", (21.0, 3.0, 14.0, 17.0)),  # the edited region, not the suggested one
        ("cell", (21.0, 11.0, 19.0, 19.0)),
        ("person", (50.0, 30.0, 10.0, 17.0)),
    ]
    (cell,) = [a for a in anns if a["category_id"] == names["cell"]]
    np.testing.assert_array_equal(coco.annToMask(cell).astype(bool), _mask())
    assert cell["area"] == int(_mask().sum())
    assert coco.getAnnIds(imgIds=[by_item["img-c"]["id"]]) == []  # reviewed background
    assert report.n_items == 3 and report.n_labels == 5  # img-b: the machine-accepted box


def test_include_suggestions_and_min_score(filled: Store, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    def counts(**kwargs: object) -> dict[str, int]:
        report = export(filled, "coco", tmp_path / str(len(kwargs)) / str(kwargs), **kwargs)  # type: ignore[arg-type]
        coco = COCO(str(report.files[0]))
        return {
            c["name"]: len(coco.getAnnIds(catIds=[c["id"]])) for c in coco.dataset["categories"]
        }

    assert counts()["car"] == 2 and "dog" not in counts()
    with_pending = counts(include_suggestions=True)
    assert with_pending["car"] == 3 and with_pending["bus"] == 2 and "dog" not in with_pending
    # min_score drops unreviewed labels under it (img-b's 0.6 box) but keeps a person's
    high = counts(include_suggestions=True, min_score=0.65)
    assert high == {"car": 2, "cell": 1, "person": 1}


def test_yolo_labels_pass_ultralytics_checks(filled: Store, tmp_path: Path) -> None:
    import yaml
    from ultralytics.data.utils import verify_image_label

    report = export(filled, "yolo", tmp_path / "yolo")
    root = tmp_path / "yolo"
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data["names"] == {0: "bus", 1: "car", 2: "cell", 3: "person"}
    images = sorted((root / "images").iterdir())
    assert [p.name for p in images] == ["img-a.png", "img-b.png", "img-c.jpg"]
    lines_by_item = {}
    for image in images:
        label_file = root / "labels" / f"{image.stem}.txt"
        _im_file, lb, _shape, *_rest, nc, msg = verify_image_label(
            (str(image), str(label_file), "", False, len(data["names"]), 0, 0, False)
        )
        assert nc == 0, msg
        assert ((lb[:, 1:] >= 0) & (lb[:, 1:] <= 1)).all()
        lines_by_item[image.stem] = lb
    assert lines_by_item["img-c"].shape == (0, 5)  # background image: empty file
    car_box = lines_by_item["img-a"][0]
    np.testing.assert_allclose(
        car_box, [1, 6 / WIDTH, 7 / HEIGHT, 10 / WIDTH, 10 / HEIGHT], atol=1e-6
    )
    assert report.n_labels == 5


def test_labelstudio_tasks_validate_against_their_config(filled: Store, tmp_path: Path) -> None:
    from label_studio_sdk.label_interface import LabelInterface

    report = export(filled, "labelstudio", tmp_path / "ls")
    out = tmp_path / "ls"
    assert {p.name for p in report.files} == {
        "config_image.xml", "tasks_image.json", "config_text.xml", "tasks_text.json"
    }  # fmt: skip
    for kind in ("image", "text"):
        interface = LabelInterface((out / f"config_{kind}.xml").read_text())
        tasks = json.loads((out / f"tasks_{kind}.json").read_text())
        for task in tasks:
            (prediction,) = task["predictions"]
            assert interface.validate_prediction(prediction, return_errors=True) == []
    image_tasks = {
        t["data"]["item_id"]: t for t in json.loads((out / "tasks_image.json").read_text())
    }
    task_a = image_tasks["img-a"]
    assert task_a["data"]["image"].endswith("a.png")
    assert task_a["predictions"][0]["score"] == pytest.approx(0.7)  # the queue score
    types = sorted(r["type"] for r in task_a["predictions"][0]["result"])
    assert types == ["brushlabels", "rectanglelabels", "rectanglelabels", "rectanglelabels"]
    (text_task,) = json.loads((out / "tasks_text.json").read_text())
    (span,) = text_task["predictions"][0]["result"]
    assert span["value"] == {"start": 0, "end": 12, "labels": ["PER"], "text": "Grace Hopper"}


def test_labelstudio_export_with_a_given_config(filled: Store, tmp_path: Path) -> None:
    config = (
        "<View><Image name='img' value='$url'/><RectangleLabels name='box' toName='img'>"
        "<Label value='Vehicle' predicted_values='car,bus'/></RectangleLabels></View>"
    )
    report = export(filled, "labelstudio", tmp_path / "ls", labeling_config=config)
    tasks = json.loads((tmp_path / "ls" / "tasks_image.json").read_text())
    task_a = next(t for t in tasks if t["data"]["item_id"] == "img-a")
    assert task_a["data"]["url"].endswith("a.png")
    labels = [r["value"]["rectanglelabels"] for r in task_a["predictions"][0]["result"]]
    assert labels == [["Vehicle"], ["Vehicle"]]  # cell and person map to nothing
    assert any("txt-1" in message for message in report.skipped)


def test_ndjson_lines(filled: Store, tmp_path: Path) -> None:
    report = export(filled, "ndjson", tmp_path / "nd")
    lines = [json.loads(line) for line in report.files[0].read_text().splitlines()]
    assert len(lines) == report.n_labels == 6
    assert len({line["uuid"] for line in lines}) == 6
    (edited,) = [x for x in lines if x.get("bbox", {}).get("left") == 21.0 and "mask" not in x]
    assert edited["bbox"] == {"top": 3.0, "left": 21.0, "height": 17.0, "width": 14.0}
    assert edited["dataRow"] == {"id": "img-a"} and "confidence" not in edited
    (cell,) = [x for x in lines if "mask" in x]
    png = Image.open(io.BytesIO(base64.b64decode(cell["mask"]["png"])))
    np.testing.assert_array_equal(np.asarray(png) > 0, _mask())
    (span,) = [x for x in lines if "location" in x]
    assert span["location"] == {"start": 0, "end": 11}  # Labelbox: end inclusive
    (machine,) = [x for x in lines if x["dataRow"]["id"] == "img-b"]
    assert machine["confidence"] == pytest.approx(0.6)


def test_bad_export_requests(filled: Store, tmp_path: Path) -> None:
    assert {"coco", "yolo", "labelstudio", "ndjson", "conll"} <= set(EXPORT_FORMATS)
    with pytest.raises(ValueError, match="unknown export format"):
        export(filled, "voc", tmp_path)
    with pytest.raises(ValueError, match="labelstudio format only"):
        export(filled, "coco", tmp_path, labeling_config="<View/>")
    with pytest.raises(ValueError, match="min_score"):
        export(filled, "coco", tmp_path, min_score=2.0)


def test_labels_judged_on_an_older_prediction_survive_a_new_one(
    filled: Store, tmp_path: Path
) -> None:
    from pycocotools.coco import COCO

    newer = Suggestion("bus", 0.9, Box(0, 0, 4, 4), "yolo", "v2")
    prediction = Prediction("img-a", "yolo", "v2", (newer,), np.zeros((1, 0), np.float32))
    filled.save_predictions([prediction], [0.9])
    report = export(filled, "coco", tmp_path / "coco", include_suggestions=True)
    coco = COCO(str(report.files[0]))
    (image,) = [i for i in coco.dataset["images"] if i["item_id"] == "img-a"]
    names = sorted(coco.cats[a["category_id"]]["name"] for a in coco.imgToAnns[image["id"]])
    # v1's accepted, edited and mask labels and the drawn box stay; v1's pending one is gone
    assert names == ["bus", "car", "car", "cell", "person"]


def test_conll_tags_the_accepted_span(filled: Store, tmp_path: Path) -> None:
    report = export(filled, "conll", tmp_path / "conll")
    lines = report.files[0].read_text().splitlines()
    assert lines[0].startswith("-DOCSTART-")
    assert "Grace\tB-PER" in lines and "Hopper\tI-PER" in lines and "Rand\tO" in lines
    assert report.n_items == 1 and report.n_labels == 1
    assert any(m.startswith("img-a") for m in report.skipped)


@pytest.mark.slow
def test_ultralytics_trains_one_epoch_on_the_yolo_export(filled: Store, tmp_path: Path) -> None:
    """The export is a dataset ultralytics really trains from (random init, no download)."""
    from ultralytics import YOLO

    export(filled, "yolo", tmp_path / "yolo")
    runs = tmp_path / "runs"
    YOLO("yolo11n.yaml").train(
        data=str(tmp_path / "yolo" / "data.yaml"),
        epochs=1,
        imgsz=64,
        batch=2,
        device="cpu",
        workers=0,
        plots=False,
        amp=False,
        project=str(runs),
        name="export-check",
        exist_ok=True,
        verbose=False,
    )
    assert (runs / "export-check" / "weights" / "last.pt").is_file()
