"""Helpers of the review-page tests: a live server, the system chromium, screenshots, seed data.

The browser is Debian's chromium (``/usr/bin/chromium``) driven by Playwright's Python
API; ``playwright install`` is never run (no download). A missing chromium fails the
test with the command that installs it, it does not skip.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from engine.store import Store
from engine.types import Box, Item, Mask, Prediction, Span, Suggestion

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
IMAGE_CLASSES = ("cat", "dog", "person")
NER_TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
TEXT = "Ada Lovelace wrote to Charles Babbage from London in 1843."


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_server(app: Any, port: int) -> Iterator[str]:
    """``app`` under uvicorn in a thread on 127.0.0.1; yields its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-review-page", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive(), "uvicorn did not shut down"


def launch_chromium(playwright: Any) -> Any:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Debian's chromium at {CHROMIUM}: "
            "run `sudo apt-get install chromium` (make test installs it)",
            pytrace=False,
        )
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def start_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the browser tests need Playwright's Python API: pip install -e '.[dev]' "
            "(never `playwright install`: the system chromium is used)",
            pytrace=False,
        )
    return sync_playwright().start()


class Shots:
    """A screenshot after each step, and one of the failing step, in ``folder``."""

    def __init__(self, page: Any, folder: Path) -> None:
        self.page, self.folder, self.count = page, folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    def take(self, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        return path

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        try:
            yield
        except BaseException:
            try:
                path = self.take(f"FAILED-{name}")
            except Exception as exc:  # the page itself may be gone
                path = Path(f"(no screenshot: {exc})")
            print(f"review page: step {name!r} failed; screenshots in {self.folder} ({path.name})")
            raise
        self.take(name)


def _photo(path: Path) -> None:
    """A 320x240 scene: a cat-ish block, a dog-ish disc, a person-ish bar."""
    y, x = np.mgrid[0:240, 0:320]
    rgb = np.stack([90 + x // 4, 120 + y // 4, 150 + 0 * x], axis=-1).astype(np.uint8)
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 60, 150, 200), fill=(200, 120, 60))
    draw.ellipse((180, 70, 280, 170), fill=(60, 70, 160))
    draw.rectangle((255, 185, 295, 230), fill=(230, 220, 90))
    image.save(path)


def disc_mask(height: int, width: int) -> Mask:
    y, x = np.mgrid[0:height, 0:width]
    bits = ((x - 230) ** 2 + (y - 120) ** 2 <= 50**2).astype(np.uint8)
    rle = mask_utils.encode(np.asfortranarray(bits))
    return Mask(rle["counts"].decode("ascii"), height, width, Box(180, 70, 281, 171))


def seed_photo(store: Store, folder: Path, item_id: str, score: float) -> None:
    """An image with five suggestions: boxes (one under the 0.25 display threshold) and
    a mask refining the dog box."""
    path = folder / f"{item_id}.png"
    _photo(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    store.add_items([Item(item_id, "image", uri=str(path))], [digest])
    rows = [
        ("cat", 0.91, Box(40, 60, 150, 200), None),
        ("dog", 0.62, Box(180, 70, 280, 170), None),
        ("person", 0.12, Box(10, 10, 60, 50), None),
        ("dog", 0.55, disc_mask(240, 320), 1),
        ("person", 0.45, Box(250, 180, 300, 230), None),
    ]
    suggestions = tuple(
        Suggestion(label, p, region, "yolo11n", "yolo11n-v1", parent_index=parent)
        for label, p, region, parent in rows
    )
    probs = np.array(
        [[p if name == label else (1 - p) / 2 for name in IMAGE_CLASSES] for label, p, *_ in rows],
        dtype=np.float32,
    )
    prediction = Prediction(item_id, "yolo11n", "yolo11n-v1", suggestions, probs, IMAGE_CLASSES)
    store.save_predictions([prediction], [score])


def seed_text(store: Store, item_id: str, score: float) -> None:
    """A sentence with two entity suggestions (PER, LOC); "Charles Babbage" is left out."""
    store.add_items([Item(item_id, "text", text=TEXT)], [None])
    rows = [("PER", 0.88, "Ada Lovelace"), ("LOC", 0.47, "London")]
    suggestions = []
    for label, p, words in rows:
        start = TEXT.index(words)
        span = Span(start, start + len(words), words)
        suggestions.append(Suggestion(label, p, span, "ner-tiny", "ner-tiny-v1"))
    probs = np.full((len(rows), len(NER_TAGS)), 0.1, dtype=np.float32)
    prediction = Prediction(item_id, "ner-tiny", "ner-tiny-v1", tuple(suggestions), probs, NER_TAGS)
    store.save_predictions([prediction], [score])


def rle_cases() -> list[dict[str, Any]]:
    """Masks and their pycocotools RLE: random ones, and one with long runs (counts of
    several characters, negative deltas); ``bits`` row-major."""
    rng = np.random.default_rng(3)
    cases = []
    for height, width in [(1, 1), (7, 5), (37, 23), (240, 320)]:
        bits = (rng.random((height, width)) > 0.5).astype(np.uint8)
        if height == 240:
            bits[:] = 0
            bits[20:230, 15:300] = 1
            bits[100:140, 50:200] = 0
        counts = mask_utils.encode(np.asfortranarray(bits))["counts"].decode("ascii")
        cases.append({"h": height, "w": width, "counts": counts, "bits": bits.ravel().tolist()})
    return cases


def canvas_point(page: Any, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of image pixel (x, y) from the canvas's ``data-view``."""
    canvas = page.locator("#canvas")
    scale, ox, oy = (float(v) for v in canvas.get_attribute("data-view").split(","))
    rect = canvas.bounding_box()
    return rect["x"] + ox + x * scale, rect["y"] + oy + y * scale


def drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A mouse drag between two image pixels (in steps, so it moves more than 4 px)."""
    page.mouse.move(*canvas_point(page, *start))
    page.mouse.down()
    page.mouse.move(*canvas_point(page, *end), steps=8)
    page.mouse.up()


def select_text(page: Any, words: str) -> None:
    """Select ``words`` in the text stage, as a mouse drag would (one DOM Range)."""
    page.evaluate(
        """(words) => {
          const container = document.getElementById("text");
          const full = container.textContent;
          const from = full.indexOf(words);
          const at = (offset) => {
            for (const el of container.children) {
              const text = el.firstChild;
              if (offset <= text.data.length) return [text, offset];
              offset -= text.data.length;
            }
            throw new Error("offset outside the text");
          };
          const range = document.createRange();
          range.setStart(...at(from));
          range.setEnd(...at(from + words.length));
          const selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
        }""",
        words,
    )


def sign_in(page: Any, base_url: str, token: str, name: str) -> None:
    page.goto(f"{base_url}/#token={token}")
    page.wait_for_selector(f'#who[data-name="{name}"]')
    assert token not in page.url and "#" not in page.url
    assert page.evaluate("sessionStorage.getItem('labelengine.token')") == token


def suggestion(page: Any, suggestion_id: int) -> Any:
    return page.locator(f'#suggestions li[data-suggestion-id="{suggestion_id}"]')


def wait_status(page: Any, suggestion_id: int, status: str) -> None:
    page.wait_for_selector(
        f'#suggestions li[data-suggestion-id="{suggestion_id}"][data-status="{status}"]'
    )


def wait_new_mask(page: Any, previous: str) -> str:
    """Until the canvas shows a segment mask other than ``previous``; its mask id."""
    page.wait_for_selector(f'#canvas:not([data-mask=""]):not([data-mask="{previous}"])')
    mask_id: str = page.get_attribute("#canvas", "data-mask")
    return mask_id


def wait_mine(page: Any, decisions: int) -> None:
    """Until the progress line counts this many decisions by the person since sign-in."""
    page.wait_for_selector(f'#progress[data-mine="{decisions}"]')
