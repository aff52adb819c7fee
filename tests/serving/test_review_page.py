"""The review page at ``/``: served without a token, and driven in a real chromium.

A live uvicorn server (a real SQLite store, a tiny random SAM) and Debian's chromium
through Playwright. Each browser step leaves a screenshot in the test's tmp folder
(printed on failure); ``UPDATE_SCREENSHOT=1`` also writes ``docs/review_page.png``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import (
    TEXT,
    Shots,
    canvas_point,
    drag,
    free_port,
    live_server,
    rle_cases,
    seed_photo,
    seed_text,
    select_text,
    sign_in,
    suggestion,
    wait_mine,
    wait_new_mask,
    wait_status,
)
from fastapi.testclient import TestClient

from engine.config import REPO_CONFIG_DIR, Settings, load_settings
from engine.models.sam.segmenter import SamSegmenter
from engine.review.people import add_person
from engine.segment.service import InteractiveSegmenter
from engine.serving.app import create_app
from engine.store import Store

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "review_page.png"


@pytest.fixture
def page_settings(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path],
        config_dir=REPO_CONFIG_DIR,
        api_token="test-token",
    )


@pytest.fixture
def page_store(page_settings: Settings) -> Iterator[Store]:
    store = Store(page_settings.resolved_database_url)
    yield store
    store.close()


@pytest.fixture(scope="module")
def tiny_sam() -> SamSegmenter:
    return SamSegmenter("litemedsam", tiny=True, device="cpu", name="sam-tiny")


@pytest.fixture
def base_url(page_settings: Settings, page_store: Store, tiny_sam: SamSegmenter) -> Iterator[str]:
    segmenter = InteractiveSegmenter(page_settings, build=lambda: tiny_sam)
    app = create_app(page_settings, page_store, segmenter)
    with live_server(app, free_port()) as url:
        yield url


def test_the_page_and_its_assets_need_no_token_and_stay_out_of_openapi(
    page_settings: Settings, page_store: Store
) -> None:
    app = create_app(page_settings, page_store)
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert '<script type="module" src="/static/js/app.js">' in page.text
        for asset in ("/static/review.css", "/static/js/app.js", "/static/js/rle.js"):
            response = client.get(asset)
            assert response.status_code == 200, asset
        assert "javascript" in client.get("/static/js/api.js").headers["content-type"]
        assert client.get("/static/../app.py").status_code == 404
        assert client.get("/me").status_code == 401  # the API still wants a token
    paths = set(app.openapi()["paths"])
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)
    assert "/me" in paths


@pytest.mark.browser
def test_the_rle_decoder_matches_pycocotools(base_url: str, open_page: Any) -> None:
    cases = rle_cases()
    page = open_page()
    page.goto(base_url + "/")
    decoded = page.evaluate(
        """async (cases) => {
          const rle = await import("/static/js/rle.js");
          return cases.map((c) => Array.from(rle.decodeMask(c.counts, c.h, c.w)));
        }""",
        cases,
    )
    for case, bits in zip(cases, decoded, strict=True):
        assert bits == case["bits"], (case["h"], case["w"])


@pytest.mark.browser
def test_an_annotator_reviews_an_image_and_a_text(
    base_url: str, open_page: Any, page_store: Store, tmp_path: Path
) -> None:
    seed_photo(page_store, tmp_path, "photo-1", 0.9)
    seed_text(page_store, "text-1", 0.5)
    _, token = add_person(page_store, "alice", "annotator")
    ids = [r.suggestion_id for r in page_store.suggestions_for("photo-1", min_score=0)]
    cat, dog, low, dog_mask, person = ids
    page = open_page()
    shots = Shots(page, tmp_path / "screens")

    with shots.step("sign-in"):
        sign_in(page, base_url, token, "alice")
        page.wait_for_selector("#start:not([hidden])")
    with shots.step("lease-image"):
        page.keyboard.press("n")
        page.wait_for_selector('#item-info[data-item-id="photo-1"]')
        assert page.get_attribute("#why", "data-rank") == "1"
        assert float(page.get_attribute("#why", "data-score")) == pytest.approx(0.9)
        assert int(page.get_attribute("#lease", "data-expires-in")) > 500
        page.wait_for_selector(f'#canvas[data-drawn="{cat},{dog},{dog_mask},{person}"]')
        assert suggestion(page, low).get_attribute("data-visible") == "false"
        # why each region is there: its uncertainty and its top classes, from the API
        assert suggestion(page, cat).get_attribute("data-top-classes").startswith("cat 91%")
        assert float(suggestion(page, dog).get_attribute("data-uncertainty")) > float(
            suggestion(page, cat).get_attribute("data-uncertainty")
        )
    with shots.step("threshold"):
        for _ in range(5):
            page.keyboard.press("[")
        assert suggestion(page, low).get_attribute("data-visible") == "true"
        assert str(low) in page.get_attribute("#canvas", "data-drawn").split(",")
        for _ in range(5):
            page.keyboard.press("]")
        assert suggestion(page, low).get_attribute("data-visible") == "false"
    with shots.step("accept-and-reject"):
        page.keyboard.press("Tab")
        assert suggestion(page, cat).get_attribute("data-selected") == "true"
        page.keyboard.press("a")
        wait_status(page, cat, "accepted")
        page.keyboard.press("Tab")
        page.keyboard.press("r")
        wait_status(page, dog, "rejected")
    with shots.step("drag-a-corner-and-relabel"):
        page.mouse.click(*canvas_point(page, 270, 200))  # inside the person box: select it
        assert suggestion(page, person).get_attribute("data-selected") == "true"
        drag(page, (300, 230), (310, 236))
        wait_status(page, person, "edited")
        wait_mine(page, 3)
        page.keyboard.press("1")  # the first label of the model's set: cat
        wait_mine(page, 4)
        assert suggestion(page, person).get_attribute("data-label") == "cat"
        if os.environ.get("UPDATE_SCREENSHOT") == "1":  # the picture in the docs
            DOCS_SCREENSHOT.write_bytes(shots.take("docs").read_bytes())
    with shots.step("segment"):
        page.keyboard.press("m")
        page.wait_for_selector('body[data-mode="segment"]')
        page.mouse.click(*canvas_point(page, 230, 120))  # a click: a positive point
        first = wait_new_mask(page, "")
        drag(page, (176, 66), (284, 174))  # a box around the disc refines it
        second = wait_new_mask(page, first)
        page.keyboard.down("Shift")
        page.mouse.click(*canvas_point(page, 200, 90))  # shift-click: a negative point
        page.keyboard.up("Shift")
        wait_new_mask(page, second)
        page.keyboard.press("z")  # undo: the mask before the last click is back
        assert page.get_attribute("#canvas", "data-mask") == second
        assert "px" in page.inner_text("#segment-info")
    with shots.step("accept-mask"):
        page.select_option("#segment-label", "dog")
        page.click("#segment-accept")
        page.wait_for_selector('#added li[data-kind="mask"][data-label="dog"]')
        assert page.get_attribute("#canvas", "data-mask") == ""
        assert page.get_attribute("#canvas", "data-added") == "1"
    with shots.step("lease-text"):
        page.keyboard.press("Escape")
        page.keyboard.press("n")
        page.wait_for_selector('#item-info[data-item-id="text-1"]')
        assert page.locator("#text mark[data-key]").count() == 2
    with shots.step("accept-a-span-and-add-one"):
        page.keyboard.press("Tab")
        page.keyboard.press("a")
        page.wait_for_selector('#text mark.status-accepted[data-label="PER"]')
        select_text(page, "Charles Babbage")
        page.wait_for_selector("#span-add:not([disabled])")
        page.select_option("#span-label", "PER")
        page.click("#span-add")
        page.wait_for_selector('#added li[data-kind="span"][data-label="PER"]')
        assert page.locator("#text mark.status-new").inner_text() == "Charles Babbage"
    with shots.step("queue-empty"):
        page.keyboard.press("n")
        page.wait_for_selector("#empty:not([hidden])")
        wait_mine(page, 9)
        assert page.get_attribute("#progress", "data-remaining") == "0"
        assert page.locator("#error").is_hidden()

    image = page_store.feedback_for("photo-1")
    assert {r.feedback.annotator for r in image} == {"alice"}
    got = [(r.feedback.action, r.feedback.suggestion_id, r.feedback.label) for r in image]
    assert got == [
        ("accept", cat, None),
        ("reject", dog, None),
        ("edit", person, "person"),
        ("edit", person, "cat"),
        ("edit", None, "dog"),
        ("accept", None, None),
    ]
    assert image[2].feedback.region.box_xyxy == pytest.approx((250, 180, 310, 236), abs=1)
    assert image[3].feedback.region.box_xyxy == image[2].feedback.region.box_xyxy
    assert image[4].feedback.region.kind == "mask"
    text = page_store.feedback_for("text-1")
    assert {r.feedback.annotator for r in text} == {"alice"}
    assert [(r.feedback.action, r.feedback.label) for r in text] == [
        ("accept", None),
        ("edit", "PER"),
        ("accept", None),
    ]
    span = text[1].feedback.region
    assert (span.start, span.end) == (TEXT.index("Charles"), TEXT.index(" from"))
    assert len({r.feedback.client_key for r in image}) == 6  # one key per decision


@pytest.mark.browser
def test_two_annotators_never_share_an_item_and_a_409_is_shown(
    base_url: str, open_page: Any, page_store: Store, tmp_path: Path
) -> None:
    seed_photo(page_store, tmp_path, "photo-1", 0.9)
    seed_photo(page_store, tmp_path, "photo-2", 0.8)
    _, alice_token = add_person(page_store, "alice", "annotator")
    _, bob_token = add_person(page_store, "bob", "annotator")
    alice, bob = open_page(allow=(409,)), open_page()
    shots = Shots(alice, tmp_path / "screens-alice")
    with shots.step("two-leases"):
        sign_in(alice, base_url, alice_token, "alice")
        sign_in(bob, base_url, bob_token, "bob")
        alice.keyboard.press("n")
        alice.wait_for_selector('#item-info[data-item-id="photo-1"]')
        bob.keyboard.press("n")  # the top item is alice's: bob gets the next one
        bob.wait_for_selector('#item-info[data-item-id="photo-2"]')
        Shots(bob, tmp_path / "screens-bob").take("bob")
    with shots.step("lease-taken-over"):
        # Out of band: alice's lease ends (another tab gave it back) and bob takes the item.
        api = {"base_url": base_url, "timeout": 10}
        with httpx.Client(**api, headers={"Authorization": f"Bearer {alice_token}"}) as a:
            assert a.post("/queue/photo-1/release").json()["released"] is True
        with httpx.Client(**api, headers={"Authorization": f"Bearer {bob_token}"}) as b:
            assert b.post("/queue/photo-2/release").json()["released"] is True
            assert b.post("/queue/next").json()["item_id"] == "photo-1"
    with shots.step("409-shown"):
        alice.keyboard.press("Tab")
        alice.keyboard.press("a")
        alice.wait_for_selector('#error:not([hidden])[data-status="409"]')
        message = alice.locator("#error-text").inner_text()
        assert "leased to 'bob'" in message and "'alice' cannot act on it" in message
        (first, *_) = page_store.suggestions_for("photo-1", min_score=0)
        assert suggestion(alice, first.suggestion_id).get_attribute("data-status") == "pending"
    assert page_store.feedback_for("photo-1") == []
    with shots.step("sign-out"):
        alice.click("#signout")
        alice.wait_for_selector("#login:not([hidden])")
        assert alice.evaluate("sessionStorage.getItem('labelengine.token')") is None


@pytest.mark.browser
def test_the_form_signs_in_heartbeats_keep_the_lease_and_leaving_releases_it(
    page_settings: Settings,
    page_store: Store,
    tiny_sam: SamSegmenter,
    open_page: Any,
    tmp_path: Path,
) -> None:
    settings = page_settings.model_copy(update={"lease_seconds": 3.0})  # a heartbeat a second
    seed_photo(page_store, tmp_path, "photo-1", 0.9)
    _, token = add_person(page_store, "carol", "annotator")
    app = create_app(settings, page_store, InteractiveSegmenter(settings, build=lambda: tiny_sam))
    page = open_page(allow=(401,))
    shots = Shots(page, tmp_path / "screens")
    with live_server(app, free_port()) as url:
        with shots.step("form-sign-in"):
            page.goto(url + "/")
            page.fill("#token-input", "not-a-token")
            page.press("#token-input", "Enter")
            page.wait_for_selector('#error:not([hidden])[data-status="401"]')
            assert "invalid or revoked bearer token" in page.inner_text("#error-text")
            page.wait_for_selector("#login:not([hidden])")
            page.fill("#token-input", token)
            page.click("#login-form button[type=submit]")
            page.wait_for_selector('#who[data-name="carol"]')
        with shots.step("heartbeat"):
            page.keyboard.press("n")
            page.wait_for_selector('#item-info[data-item-id="photo-1"]')
            with page.expect_response(lambda r: r.url.endswith("/queue/photo-1/heartbeat")) as hb:
                pass
            assert hb.value.status == 200
            assert hb.value.request.headers["authorization"] == f"Bearer {token}"
            page.wait_for_timeout(3500)  # past the first lease: alive only through heartbeats
            assert page_store.lease_of("photo-1").annotator == "carol"
        with shots.step("leave-the-page"):
            page.goto("about:blank")  # pagehide: the lease goes back (fetch keepalive)
            deadline = time.monotonic() + 10
            while page_store.lease_of("photo-1").annotator is not None:
                assert time.monotonic() < deadline, "the lease was not released on leaving"
                time.sleep(0.05)


@pytest.mark.browser
def test_keyboard_alone_nudges_a_box_accepts_all_and_skips(
    base_url: str, open_page: Any, page_store: Store, tmp_path: Path
) -> None:
    seed_photo(page_store, tmp_path, "photo-1", 0.9)
    seed_photo(page_store, tmp_path, "photo-2", 0.8)
    _, token = add_person(page_store, "dave", "annotator")
    cat, dog, _, dog_mask, person = (
        r.suggestion_id for r in page_store.suggestions_for("photo-1", min_score=0)
    )
    page = open_page()
    shots = Shots(page, tmp_path / "screens")
    with shots.step("nudge"):
        sign_in(page, base_url, token, "dave")
        page.keyboard.press("n")
        page.wait_for_selector('#item-info[data-item-id="photo-1"]')
        page.keyboard.press("Tab")
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        page.keyboard.press("Shift+ArrowDown")
        page.keyboard.press("Alt+ArrowLeft")  # resize: the right edge 1 px in
        wait_status(page, cat, "edited")  # one edit, after the pause
    with shots.step("accept-all"):
        page.keyboard.press("Shift+A")
        for sid in (dog, dog_mask, person):
            wait_status(page, sid, "accepted")
    with shots.step("skip"):
        page.keyboard.press("s")
        page.wait_for_selector('#item-info[data-item-id="photo-2"]')
    got = [
        (r.feedback.action, r.feedback.suggestion_id) for r in page_store.feedback_for("photo-1")
    ]
    assert got == [
        ("edit", cat),
        ("accept", dog),
        ("accept", dog_mask),
        ("accept", person),
        ("skip", None),
    ]
    edit = page_store.feedback_for("photo-1")[0].feedback
    assert edit.region.box_xyxy == pytest.approx((43, 70, 152, 210))
    assert edit.label == "cat"
