"""Fixtures of the browser tests: one chromium per module, a fresh page per call that
fails the test on any JavaScript error or unexpected HTTP error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser import VIEWPORT, launch_chromium, start_playwright


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    playwright = start_playwright()
    try:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def open_page(chromium: Any) -> Iterator[Any]:
    """``open_page(allow=(409,))`` -> a fresh page (own context, own sessionStorage) at
    1280x800. JavaScript errors fail the test, and so do HTTP errors the browser logs
    other than the statuses in ``allow`` (the ones a test provokes)."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make(allow: tuple[int, ...] = ()) -> Any:
        context = chromium.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        expected = tuple(f"status of {status} " for status in allow)

        def console(message: Any) -> None:
            if message.type == "error" and not any(e in message.text for e in expected):
                errors.append(message.text)

        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", console)
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"errors in the page: {errors}"
