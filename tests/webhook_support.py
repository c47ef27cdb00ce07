"""Shared by the webhook tests: the README's receiver snippet, a small library, helpers."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.content_fixtures import TIP, build_library

ROOT = Path(__file__).resolve().parent.parent
ONE_STEP = """name: basics
description: One welcome.
enroll: on_confirm
send_window: "08:00-11:00"
steps:
  - send: system/welcome
    after: 0d
"""
SIGNATURE = re.compile(r"^t=(\d+)(,v1=[0-9a-f]{64})+$")


def readme_verify() -> Callable[..., bool]:
    """The ``verify`` function exactly as the README's Webhooks section shows it."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- webhook-receiver -->\n```python\n(.*?)```", readme, re.S)
    assert found, "README has no receiver snippet after <!-- webhook-receiver -->"
    namespace: dict[str, Any] = {}
    exec(compile(found.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    verify: Callable[..., bool] = namespace["verify"]
    return verify


def webhook_library(root: Path) -> dict[str, str]:
    """Settings overrides for a small library: a one-step sequence and a campaign item."""
    build_library(
        root,
        {"content/sequences/basics.yaml": ONE_STEP, "content/campaigns/promo.md": TIP},
    )
    return {
        "content_dir": str(root / "content"),
        "templates_dir": str(root / "templates" / "emails"),
        "cron_file": str(root / "cron.yaml"),
        "webhook_allow_private": "true",
        # these tests drive several emails to one subscriber within minutes; the marketing
        # cap (tests/test_attention_*.py) would defer them
        "marketing_cap": "off",
    }
