"""Headless Chromium for the web UI tests and the docs' screenshots (Debian's ``chromium``).

Playwright drives the system's browser through `executable_path`; it never
downloads one (``playwright install`` is not needed and is not run).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The browser's path; skip (one line) where it is missing, unless under CI (then fail)."""
    path = chromium_path()
    try:
        import playwright.sync_api  # noqa: F401
    except ModuleNotFoundError:
        path = None
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but chromium or playwright is missing (.ci/run installs them)")
        pytest.skip("browser tests: no chromium (apt-get install chromium) or no playwright")
    return path


def launch(playwright: Any, path: str) -> Any:
    return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)


def expect(locator: Any) -> Any:
    """Playwright's `expect` (auto-retrying; needs no script evaluation, so CSP allows it)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)
