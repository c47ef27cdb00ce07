"""Shared pieces of the REST API tests: a clock, a recording mailer, keys and a client."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from fastapi.testclient import TestClient

from newsletter.api_keys import create_key
from newsletter.app import App
from newsletter.web.app import create_web_app


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def keys_and_client(
    app: App, clock: Clock, monotonic: Callable[[], float] = time.monotonic
) -> tuple[TestClient, str, str]:
    """A test client plus a write key and a read key; ``monotonic``: the rate limits' clock."""
    _view, write = create_key(app, "shop", scope="write", now=clock())
    _view, read = create_key(app, "dashboard", scope="read", now=clock())
    web = create_web_app(app, clock=clock, monotonic=monotonic)
    return TestClient(web), write, read
