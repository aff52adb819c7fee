from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from engine.ingest import ingest
from engine.paths import PathNotAllowedError, confine
from engine.store import Store


def _image(path: Path, color: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def test_folder_ingest_is_idempotent_with_content_ids(tmp_path: Path, store: Store) -> None:
    _image(tmp_path / "imgs" / "a.png", (255, 0, 0))
    _image(tmp_path / "imgs" / "sub" / "b.png", (0, 255, 0))
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    first = ingest(store, str(tmp_path / "imgs"), [tmp_path])
    again = ingest(store, str(tmp_path / "imgs"), [tmp_path])
    assert (first.added, again.added, again.existing) == (2, 0, 2)
    ids = {item.item_id for item in store.list_items()}
    assert all(len(i) == 24 for i in ids)


def test_glob_and_manifests(tmp_path: Path, store: Store) -> None:
    _image(tmp_path / "a.png", (1, 2, 3))
    _image(tmp_path / "b.png", (4, 5, 6))
    assert ingest(store, str(tmp_path / "*.png"), [tmp_path]).added == 2
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"uri": "a.png", "id": "cat-1", "metadata": {"split": "train"}})
        + "\n"
        + json.dumps({"text": "Paris is in France.", "id": "t1"})
        + "\n"
        + "{broken json\n"
        + json.dumps({"uri": "missing.png"})
        + "\n"
    )
    report = ingest(store, str(manifest), [tmp_path])
    assert report.added == 2
    assert len(report.errors) == 2
    assert store.get_item("cat-1").metadata == {"split": "train"}
    assert store.get_item("t1").text == "Paris is in France."
    csv_manifest = tmp_path / "m.csv"
    csv_manifest.write_text("uri,id\nb.png,dog-1\n")
    assert ingest(store, str(csv_manifest), [tmp_path]).added == 1


def test_paths_outside_the_roots_are_refused(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = _image(tmp_path / "outside" / "secret.png", (9, 9, 9))
    with pytest.raises(PathNotAllowedError, match="outside the data roots"):
        confine(root / ".." / ".." / "etc" / "passwd", [root])
    os.symlink(outside, root / "link.png")
    with pytest.raises(PathNotAllowedError):
        confine(root / "link.png", [root])
    manifest = root / "m.jsonl"
    manifest.write_text(
        json.dumps({"uri": "../../etc/passwd"}) + "\n" + json.dumps({"uri": "link.png"}) + "\n"
    )
    report = ingest(store, str(manifest), [root])
    assert report.added == 0
    assert all("outside the data roots" in message for _, message in report.errors)
    assert len(report.errors) == 2


def test_a_manifest_line_that_is_not_utf8_is_named_and_the_rest_ingested(
    tmp_path: Path, store: Store
) -> None:
    manifest = tmp_path / "texts.jsonl"
    good = [json.dumps({"text": f"sentence {i}", "id": f"t{i}"}).encode() for i in range(3)]
    manifest.write_bytes(good[0] + b"\n" + b'{"text": "caf\xe9"}\n' + good[1] + b"\n" + good[2])
    report = ingest(store, str(manifest), [tmp_path])
    assert report.added == 3
    assert report.errors == [(f"{manifest}:2", "not UTF-8 (byte 14 of the line)")]


def test_a_csv_manifest_that_is_not_utf8_names_file_and_line(tmp_path: Path, store: Store) -> None:
    manifest = tmp_path / "texts.csv"
    manifest.write_bytes(b"id,text\nt1,hello\nt2,caf\xe9\n")
    with pytest.raises(ValueError, match=rf"{manifest}:3: not UTF-8"):
        ingest(store, str(manifest), [tmp_path])
    assert store.count_items() == 0
