"""One Chromium per real-browser test module (each test opens its own contexts, so
cookies and storage never leak between tests). Module scope, not session scope: the
sync Playwright driver holds an event loop of its own, which must be gone before the
asyncio tests of the other packages run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.kit import CHROMIUM, CHROMIUM_ARGS, SHOTS, require_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
