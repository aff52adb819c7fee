"""The reviewers' quality page at ``/quality`` in a real chromium against a live server.

Seed: 6 images with one ``cat`` box each; 2 consensus items (k = 3): everyone accepts
item 0, only alice accepts item 1 (so it waits for a reviewer); 1 gold item that alice
gets right and bob wrong. The page must show the kappa with its verdict, a bar per class
and per person, the case waiting for review, and must resolve it and close a calibration
batch through its buttons. ``UPDATE_SCREENSHOT=1`` also writes ``docs/quality_page.png``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Shots, free_port, live_server
from quality_data import BOX, boxed_items, decide

from engine.config import REPO_CONFIG_DIR, Settings, load_settings
from engine.quality import consensus
from engine.review import queue
from engine.review.people import add_person
from engine.serving.app import create_app
from engine.store import Store

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "quality_page.png"


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[str, Store, list[str]]]:
    settings: Settings = load_settings(
        data_dir=tmp_path / "data", config_dir=REPO_CONFIG_DIR, api_token="test-token"
    )
    store = Store(settings.resolved_database_url)
    ids = boxed_items(store, [0.9, 0.8, 0.5, 0.4, 0.3, 0.2])
    consensus.choose_overlap(store, k=3, item_ids=ids[:2])
    box = {"kind": "box", "box_xyxy": list(BOX.box_xyxy)}
    consensus.mark_gold(store, ids[5], labels=[{"label": "cat", "region": box}], by="rita")
    answers = {("bob", ids[1]), ("carol", ids[1]), ("bob", ids[5])}  # these are rejected
    for person in ("alice", "bob", "carol"):
        add_person(store, person, "annotator")
        for _ in range(3):
            lease = queue.next_item(store, person, lease_seconds=60, gold_rate=1.0)
            assert lease is not None
            action = "reject" if (person, lease.item_id) in answers else "accept"
            decide(store, lease.item_id, person, action)
    app = create_app(settings, store)
    with live_server(app, free_port()) as url:
        yield url, store, ids
    store.close()


@pytest.mark.browser
def test_a_reviewer_reads_the_quality_page_and_resolves_a_case(
    seeded: tuple[str, Store, list[str]], open_page: Any, tmp_path: Path
) -> None:
    base_url, store, ids = seeded
    token = add_person(store, "rita", "reviewer")[1]
    page = open_page()
    shots = Shots(page, tmp_path / "shots")
    with shots.step("report"):
        page.goto(f"{base_url}/quality#token={token}")
        page.wait_for_selector("body[data-loaded]")
        assert page.text_content("#kappa-items") == "2"
        # answers: item 0 = cat, cat, cat; item 1 = cat, none, none -> kappa 0.25 (by hand:
        # P-bar = (1 + 1/3) / 2 = 2/3; p_cat = 4/6 -> P_e = 16/36 + 4/36 = 5/9;
        # kappa = (2/3 - 5/9) / (4/9) = 0.25)
        assert page.text_content("#kappa") == "0.25"
        assert page.get_attribute("#kappa-verdict", "data-verdict") == "clarify"
        cat = page.locator('#chart-classes rect[data-label="cat"]')
        assert cat.get_attribute("data-verdict") == "clarify"
        gold = {
            name: page.locator(f'#chart-gold rect[data-label="{name}"]').get_attribute("data-value")
            for name in ("alice", "bob", "carol")
        }
        assert gold == {"alice": "1", "bob": "0", "carol": "1"}
        flagged = page.locator("#attention-list li[data-kind=person]").all_text_contents()
        assert any(text.startswith("bob:") for text in flagged)
        assert page.locator("#chart-acceptance polyline").count() == 1
        if os.environ.get("UPDATE_SCREENSHOT"):
            page.screenshot(path=str(DOCS_SCREENSHOT), full_page=True)
    with shots.step("resolve"):
        case = page.locator(f'.case[data-item="{ids[1]}"]')
        assert case.locator(".person.majority").count() == 2  # bob and carol
        case.locator('button[data-pick="alice"]').click()
        page.wait_for_selector("#cases:text-is('nothing waiting')")
        done = store.quality_item(ids[1])
        assert done is not None and (done.resolution, done.resolved_by) == ("reviewer", "rita")
    with shots.step("calibration"):
        page.fill("#calibration-size", "2")
        page.click("#calibration-form button[type=submit]")
        page.wait_for_selector('tr[data-batch="calibration-1"] button[data-close]')
        page.click('tr[data-batch="calibration-1"] button[data-close]')
        closing = 'tr[data-batch="calibration-1"] button[data-close]'
        page.wait_for_selector(closing, state="detached")
        assert store.batch("calibration-1").state == "closed"


@pytest.mark.browser
def test_an_annotator_is_told_the_page_is_for_reviewers(
    seeded: tuple[str, Store, list[str]], open_page: Any
) -> None:
    base_url, store, _ = seeded
    token = add_person(store, "ann", "annotator")[1]
    page = open_page(allow=(403,))
    page.goto(f"{base_url}/quality#token={token}")
    page.wait_for_selector("#error:not([hidden])")
    assert "for reviewers" in page.text_content("#error-text")
    assert page.is_hidden("#report")
