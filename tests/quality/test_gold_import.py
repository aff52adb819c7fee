"""Gold labels imported from COCO, Label Studio and CoNLL files, bad entries named by place."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from engine.cli import app
from engine.config import load_settings
from engine.imports.gold import import_gold
from engine.store import Store
from engine.types import Box, Item, Mask, Span

TEXT = "Grace Hopper joined Remington Rand in Philadelphia ."


def _store_items(store: Store) -> None:
    items = [
        Item("img-1", "image", uri="/data/photos/one.jpg"),
        Item("img-2", "image", uri="/data/photos/two.jpg"),
        Item("txt-1", "text", text=TEXT),
    ]
    store.add_items(items, [None] * len(items))


def test_coco_boxes_and_masks_become_gold(store: Store, tmp_path: Path) -> None:
    _store_items(store)
    grid = np.zeros((20, 30), dtype=np.uint8, order="F")
    grid[5:10, 4:12] = 1
    rle = mask_utils.encode(np.asfortranarray(grid))
    coco = {
        "images": [
            {"id": 1, "file_name": "one.jpg", "width": 30, "height": 20},
            {"id": 2, "file_name": "x.jpg", "item_id": "img-2"},
            {"id": 3, "file_name": "elsewhere.jpg"},
        ],
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "cell"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 5]},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "bbox": [4, 5, 8, 5],
                "segmentation": {"size": [20, 30], "counts": rle["counts"].decode()},
            },
            {"id": 3, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]},
            {"id": 4, "image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 1]},
        ],
    }
    path = tmp_path / "gold.json"
    path.write_text(json.dumps(coco))
    done = import_gold(store, path, "coco", by="rita")
    assert done.imported == ["img-1", "img-2"]  # img-2: gold "nothing here"
    assert done.skipped == [
        f"{path}: images[2]: no stored item with this item_id or file_name",
        f"{path}: annotations[2]: category_id 9 is not in categories",
        f"{path}: annotations[3]: image_id not among the imported images",
    ]
    labels = store.item_labels(store.get_item("img-1")).labels
    assert [(lab.label, lab.source) for lab in labels] == [("car", "gold"), ("cell", "gold")]
    assert labels[0].region == Box(1, 2, 11, 7)
    assert (
        isinstance(labels[1].region, Mask) and labels[1].region.mask_rle == rle["counts"].decode()
    )
    again = import_gold(store, path, "coco", by="rita")
    assert again.imported == [] and "already a gold item" in again.skipped[-1]


def test_label_studio_tasks_and_conll_sentences_become_gold(store: Store, tmp_path: Path) -> None:
    _store_items(store)
    tasks = [
        {
            "data": {"image": "/data/upload/two.jpg"},
            "annotations": [
                {
                    "was_cancelled": False,
                    "result": [
                        {
                            "id": "r1",
                            "type": "rectanglelabels",
                            "from_name": "label",
                            "to_name": "image",
                            "original_width": 200,
                            "original_height": 100,
                            "value": {
                                "x": 10,
                                "y": 20,
                                "width": 50,
                                "height": 50,
                                "rectanglelabels": ["bus"],
                            },
                        }
                    ],
                }
            ],
        },
        {"data": {"image": "/nowhere.jpg"}, "annotations": []},
    ]
    ls_path = tmp_path / "ls.json"
    ls_path.write_text(json.dumps(tasks))
    done = import_gold(store, ls_path, "labelstudio", by="rita")
    assert done.imported == ["img-2"] and done.skipped == [f"{ls_path}: tasks[1]: no stored item"]
    [bus] = store.item_labels(store.get_item("img-2")).labels
    assert (bus.label, bus.region) == ("bus", Box(20, 20, 120, 70))

    conll = tmp_path / "gold.conll"
    words = TEXT.split()
    tags = ["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O", "B-LOC", "O"]
    conll.write_text(
        "\n".join(f"{w} {t}" for w, t in zip(words, tags, strict=True)) + "\n\nNo such sentence O\n"
    )
    done = import_gold(store, conll, "conll", by="rita")
    assert done.imported == ["txt-1"] and done.skipped == [
        f"{conll}: sentence 2: no stored text item with these words"
    ]
    spans = [(lab.label, lab.region) for lab in store.item_labels(store.get_item("txt-1")).labels]
    assert spans == [("PER", Span(0, 12)), ("ORG", Span(20, 34)), ("LOC", Span(38, 50))]


def test_unreadable_files_are_named(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [1,\n')
    with pytest.raises(ValueError, match=r"bad.json: line 2: invalid JSON"):
        import_gold(store, bad, "coco", by="r")
    with pytest.raises(ValueError, match="needs lists"):
        (tmp_path / "empty.json").write_text("{}")
        import_gold(store, tmp_path / "empty.json", "coco", by="r")
    with pytest.raises(ValueError, match="unknown gold format"):
        import_gold(store, bad, "voc", by="r")
    with pytest.raises(ValueError, match="no such file"):
        import_gold(store, tmp_path / "missing.json", "coco", by="r")
    broken = tmp_path / "broken.conll"
    broken.write_text("Grace B-PER\nHopper\n")
    with pytest.raises(ValueError, match=r"broken\.conll: line 2"):
        import_gold(store, broken, "conll", by="r")


def test_gold_import_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELENGINE_DATA_DIR", str(tmp_path / "data"))
    store = Store(load_settings().resolved_database_url)
    _store_items(store)
    store.close()
    coco = {"images": [{"id": 1, "file_name": "one.jpg"}], "annotations": [], "categories": []}
    (tmp_path / "g.json").write_text(json.dumps(coco))
    result = CliRunner().invoke(app, ["quality", "gold-import", str(tmp_path / "g.json")])
    assert result.exit_code == 0, result.output
    assert "1 gold items imported, 0 skipped" in result.output
    bad = CliRunner().invoke(app, ["quality", "gold-import", str(tmp_path / "nope.json")])
    assert bad.exit_code != 0 and "such file" in " ".join(bad.output.split())  # rich wraps
