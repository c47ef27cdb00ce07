"""Headless Chromium (Debian's package) driven by Playwright, for browser tests."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The browser to drive; skips outside CI when none is installed, fails in CI."""
    path = os.environ.get("NEWSLETTER_CHROMIUM") or shutil.which("chromium") or ""
    if not path:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but no chromium is installed (apt-get install chromium)")
        pytest.skip("no chromium installed")
    return path
