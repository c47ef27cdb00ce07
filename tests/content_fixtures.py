"""Builders for small content libraries in a temporary folder (shared by the content tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ADDRESS = "12 Harbour Road, Bristol BS1 4XX, UK"

TIP = """---
subject: "Meet your QL, {{ subscriber.first_name or 'friend' }}"
preheader: The muscle behind most low back pain.
tags: [ql]
---
Hi {{ subscriber.first_name or "there" }},

Press **gently**. See [the guide]({{ links.web_version or 'https://shop.example/guide' }}).
"""
WELCOME = """---
subject: Welcome
preheader: What to expect.
---
Thanks for confirming, {{ subscriber.email }}.
"""
CONFIRMATION = """---
subject: Please confirm
preheader: One click.
transactional: true
medical: false
---
<a class="button" href="{{ links.confirm }}">Confirm</a>
"""
SEQUENCE = """name: basics
description: First days.
enroll: on_confirm
send_window: "08:00-11:00"
steps:
  - send: system/welcome
    after: 0d
  - send: tips/meet-your-ql
    after: 3d
then:
  every: 4d
  from: [tips]
"""
CRON = """jobs:
  plan-drips:
    cron: "* * * * *"
  plan-campaigns:
    cron: "* * * * *"
  deliver:
    cron: "* * * * *"
  recover-leases:
    cron: "*/5 * * * *"
  webhooks:
    cron: "* * * * *"
  events:
    cron: "* * * * *"
  bounces:
    cron: "*/10 * * * *"
  sunset:
    cron: "30 3 * * *"
"""


def build_library(root: Path, files: dict[str, str] | None = None) -> Path:
    """A valid small library under *root* (content/, templates/emails/, cron.yaml);
    *files* (paths relative to *root*) are written over it."""
    shutil.copytree(ROOT / "templates" / "emails", root / "templates" / "emails")
    base = {
        "content/tips/meet-your-ql.md": TIP,
        "content/system/welcome.md": WELCOME,
        "content/system/confirmation.md": CONFIRMATION,
        "content/sequences/basics.yaml": SEQUENCE,
        "cron.yaml": CRON,
    }
    for name, text in {**base, **(files or {})}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def use_library(monkeypatch: pytest.MonkeyPatch, root: Path, *, address: str = ADDRESS) -> None:
    """Point the settings at *root* and run from there (relative paths in messages)."""
    monkeypatch.chdir(root)
    for key in ("CONTENT_DIR", "TEMPLATES_DIR", "CRON_FILE", "VAR_DIR", "BASE_URL", "FROM_NAME"):
        monkeypatch.delenv(f"NEWSLETTER_{key}", raising=False)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "test-secret")
    monkeypatch.setenv("NEWSLETTER_POSTAL_ADDRESS", address)
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "https://shop.example")
    monkeypatch.setenv("NEWSLETTER_FROM_NAME", "Backease")
    monkeypatch.setenv("NEWSLETTER_DEFAULT_TIMEZONE", "Europe/London")
