"""Whole-item class exports: ``classes`` (CSV + JSON) and ``imagefolder`` (``<class>/<file>``),
from a real store through ``export`` and through the real CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from engine.cli import app
from engine.config import load_settings
from engine.formats.export import EXPORT_FORMATS, export
from engine.store import Store
from engine.types import Box, Feedback, Item, Prediction, Suggestion

CLASSES = ("cat", "dog", "cup")


def _image(path: Path, seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def _classified(item_id: str, label: str, score: float) -> Prediction:
    row = np.full((1, 3), (1.0 - score) / 2, np.float32)
    row[0, CLASSES.index(label)] = score
    suggestion = Suggestion(label, score, None, "clf", "c1")
    return Prediction(item_id, "clf", "c1", (suggestion,), row, CLASSES)


def fill(store: Store, root: Path) -> None:
    """a: accepted cat; b (same file name as a, other folder): edited to dog; c: pending
    cup (not exported unless asked); d: a class per person + a drawn box (skipped);
    e: a text item with a class; f: reviewed, every class rejected."""
    (root / "x").mkdir()
    (root / "y").mkdir()
    items = [
        Item("a", "image", uri=_image(root / "x" / "photo.png", 0)),
        Item("b", "image", uri=_image(root / "y" / "photo.png", 1)),
        Item("c", "image", uri=_image(root / "c.png", 2)),
        Item("d", "image", uri=_image(root / "d.jpg", 3)),
        Item("e", "text", text="a cat sat"),
        Item("f", "image", uri=_image(root / "f.png", 4)),
    ]
    store.add_items(items, [None] * len(items))
    labels = {"a": "cat", "b": "cat", "c": "cup", "d": "dog", "e": "cat", "f": "dog"}
    store.save_predictions(
        [_classified(i, label, 0.8) for i, label in labels.items()], [0.3] * len(labels)
    )
    sid = {i: store.suggestions_for(i)[0].suggestion_id for i in labels}
    for feedback in (
        Feedback("a", "accept", "k1", suggestion_id=sid["a"]),
        Feedback("b", "edit", "k2", suggestion_id=sid["b"], label="dog"),
        Feedback("d", "accept", "k3", suggestion_id=sid["d"]),
        Feedback("d", "edit", "k4", label="c/at"),  # an unsafe folder name
        Feedback("d", "edit", "k5", label="cat", region=Box(1, 1, 5, 5)),
        Feedback("e", "accept", "k6", suggestion_id=sid["e"]),
        Feedback("f", "reject", "k7", suggestion_id=sid["f"]),
        Feedback("f", "reject", "k8"),
    ):
        store.record_feedback(feedback)


def test_classes_csv_and_json_list_each_item_class(store: Store, tmp_path: Path) -> None:
    assert {"classes", "imagefolder"} <= set(EXPORT_FORMATS)
    fill(store, tmp_path)
    report = export(store, "classes", tmp_path / "out")
    assert [p.name for p in report.files] == ["classes.csv", "classes.json"]
    with (tmp_path / "out" / "classes.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert json.loads((tmp_path / "out" / "classes.json").read_text(encoding="utf-8")) == rows
    assert [(r["item_id"], r["label"], r["decided_by"]) for r in rows] == [
        ("a", "cat", "person"),
        ("b", "dog", "person"),
        ("d", "c/at", "person"),
        ("d", "dog", "person"),
        ("e", "cat", "person"),
    ]
    assert rows[0]["uri"] == str(tmp_path / "x" / "photo.png") and rows[-1]["uri"] == ""
    assert (report.n_items, report.n_labels) == (4, 5)
    assert any("'cat' has a box region" in s for s in report.skipped)
    assert any(s.startswith("f: no whole-item class") for s in report.skipped)
    pending = export(store, "classes", tmp_path / "all", include_suggestions=True)
    assert pending.n_labels == 6  # + c's pending cup, decided by the model


def test_imagefolder_copies_each_image_into_its_class_folders(store: Store, tmp_path: Path) -> None:
    fill(store, tmp_path)
    out = tmp_path / "folder"
    report = export(store, "imagefolder", out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["c_at/d.jpg", "cat/photo.png", "dog/d.jpg", "dog/photo.png"]
    assert (out / "cat" / "photo.png").read_bytes() == (tmp_path / "x" / "photo.png").read_bytes()
    assert not (out / "cat" / "photo.png").is_symlink()
    assert (report.n_items, report.n_labels) == (3, 4)
    assert any(s.startswith("e: not a local image file") for s in report.skipped)
    again = export(store, "imagefolder", tmp_path / "both", include_suggestions=True)
    assert again.n_labels == 5
    # b (x/photo.png's namesake y/photo.png) is a cat too now: the same name, made unique
    store.record_feedback(Feedback("b", "edit", "k9", label="cat"))
    export(store, "imagefolder", tmp_path / "dup")
    assert sorted(p.name for p in (tmp_path / "dup" / "cat").iterdir()) == [
        "photo.png",
        "photo_2.png",
    ]
    assert (tmp_path / "dup" / "dog" / "photo.png").is_file()  # b is in both folders


def test_the_cli_exports_classes_and_image_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABELENGINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELENGINE_DATA_ROOTS", f'["{tmp_path}"]')
    store = Store(load_settings().resolved_database_url)
    fill(store, tmp_path)
    store.close()
    for fmt, expected in (("classes", "classes.csv"), ("imagefolder", "cat")):
        result = CliRunner().invoke(app, ["export", "--format", fmt, "--out", fmt])
        assert result.exit_code == 0, result.output
        assert f"{fmt}: " in result.output and (tmp_path / fmt / expected).exists()
