"""The browser tier: Debian's Chromium, headless, driven by Playwright (pointed at
/usr/bin/chromium; nothing downloads a browser). Every test here is marked ``browser``: it skips
with the reason when Chromium or Playwright is missing, and fails under CGSENTRY_REQUIRE_KERNEL=1."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.consolekit import Stack, console_stack
from tests.prereqs import CHROMIUM


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from tests.prereqs import browser_missing, missing

    reason = browser_missing()
    if reason is not None:
        missing("browser", reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with console_stack(tmp_path) as s:
        yield s


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests save screenshots: $CGSENTRY_SCREENSHOTS, else a temporary directory."""
    where = os.environ.get("CGSENTRY_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        return Path(where)
    return tmp_path_factory.mktemp("screenshots")
