"""`labelengine export` end to end: a real store, the real CLI, files the real readers load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from engine.cli import app
from engine.config import load_settings
from engine.imaging.masks import mask_to_region
from engine.store import Store
from engine.types import Box, Feedback, Item, Prediction, Span, Suggestion

WIDTH, HEIGHT = 64, 48
TEXT = "Grace Hopper joined Remington Rand."


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store with: img-a (accepted box, accepted mask, pending box), img-bad (reviewed,
    corrupt file), txt-1 (accepted PER span, pending ORG span)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABELENGINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELENGINE_DATA_ROOTS", f'["{tmp_path}"]')
    pixels = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    store = Store(load_settings().resolved_database_url)
    items = [
        Item("img-a", "image", uri=str(tmp_path / "a.png")),
        Item("img-bad", "image", uri=str(tmp_path / "bad.png")),
        Item("txt-1", "text", text=TEXT),
    ]
    store.add_items(items, [None] * len(items))
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    disc = (yy - 20) ** 2 + (xx - 30) ** 2 <= 81
    suggest = lambda label, score, region: Suggestion(label, score, region, "m", "v1")  # noqa: E731
    image = [
        suggest("car", 0.9, Box(1, 2, 11, 12)),
        suggest("cell", 0.8, mask_to_region(disc)),
        suggest("bus", 0.3, Box(30, 5, 50, 40)),
    ]
    text = [suggest("PER", 0.9, Span(0, 12, "Grace Hopper")), suggest("ORG", 0.4, Span(20, 34))]
    store.save_predictions(
        [
            Prediction("img-a", "m", "v1", tuple(image), np.zeros((3, 0), np.float32)),
            Prediction("txt-1", "m", "v1", tuple(text), np.zeros((2, 0), np.float32)),
        ],
        [0.5, 0.4],
    )
    a_ids = [r.suggestion_id for r in store.suggestions_for("img-a")]
    t_ids = [r.suggestion_id for r in store.suggestions_for("txt-1")]
    for n, (item_id, sid) in enumerate(
        [("img-a", a_ids[0]), ("img-a", a_ids[1]), ("txt-1", t_ids[0])]
    ):
        store.record_feedback(Feedback(item_id, "accept", f"k{n}", suggestion_id=sid))
    store.record_feedback(Feedback("img-bad", "reject", "k-bad"))
    store.close()
    return tmp_path


def _export(*args: str) -> str:
    result = CliRunner().invoke(app, ["export", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_coco_loads_in_pycocotools_with_masks_as_rle(env: Path) -> None:
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    output = _export("--format", "coco", "--out", "coco")
    coco = COCO(str(env / "coco" / "annotations.json"))
    anns = coco.loadAnns(coco.getAnnIds())
    assert sorted(coco.cats[a["category_id"]]["name"] for a in anns) == ["car", "cell"]
    (mask_ann,) = [a for a in anns if isinstance(a.get("segmentation"), dict)]
    assert mask_utils.decode(coco.annToRLE(mask_ann)).sum() == 253  # the r=9 disc's pixels
    assert "wrote" in output and "annotations.json" in output
    assert "skipped" in output and "img-bad" in output  # corrupt file: named, not fatal


def test_yolo_writes_data_yaml_and_label_files(env: Path) -> None:
    _export("--format", "yolo", "--out", "yolo")
    data = yaml.safe_load((env / "yolo" / "data.yaml").read_text())
    names = data["names"].values() if isinstance(data["names"], dict) else data["names"]
    assert {"car", "cell"} <= set(names)
    labels = list((env / "yolo" / "labels").rglob("*.txt"))
    lines = [ln for p in labels for ln in p.read_text().splitlines() if ln.strip()]
    assert len(lines) == 2
    assert all(0.0 <= float(v) <= 1.0 for ln in lines for v in ln.split()[1:])


def test_include_suggestions_adds_pending_labels(env: Path) -> None:
    _export("--format", "ndjson", "--out", "accepted")
    _export("--format", "ndjson", "--out", "all", "--include-suggestions")
    accepted = (env / "accepted" / "annotations.ndjson").read_text().splitlines()
    everything = (env / "all" / "annotations.ndjson").read_text().splitlines()
    assert [json.loads(line) for line in everything]  # every line is JSON
    assert len(everything) == len(accepted) + 2  # the pending bus box and ORG span


def test_labelstudio_and_conll(env: Path) -> None:
    _export("--format", "labelstudio", "--out", "ls")
    tasks = json.loads((env / "ls" / "tasks_text.json").read_text())
    (result,) = tasks[0]["predictions"][0]["result"]
    assert result["value"]["labels"] == ["PER"] and result["value"]["text"] == "Grace Hopper"
    assert (env / "ls" / "config_image.xml").is_file()
    _export("--format", "conll", "--out", "conll")
    conll = (env / "conll" / "annotations.conll").read_text()
    assert "B-PER" in conll and "I-PER" in conll and "ORG" not in conll


def test_unknown_format_is_a_clear_error(env: Path) -> None:
    result = CliRunner().invoke(app, ["export", "--format", "voc", "--out", "x"])
    assert result.exit_code == 2
    assert "unknown export format 'voc'" in result.output and "coco" in result.output
