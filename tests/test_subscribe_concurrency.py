"""Two posts of the same new address at the same moment (a double-clicked form)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.models import Delivery, Subscriber
from newsletter.settings import load_settings
from newsletter.subscriptions import SubscribeOutcome, SubscribeRequest, subscribe
from tests.conftest import NOW, base_environ


def race(app: App, email: str) -> list[object]:
    barrier = threading.Barrier(2)
    results: list[object] = []

    def post() -> None:
        barrier.wait()
        try:
            results.append(subscribe(app, SubscribeRequest(email=email), now=NOW))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.postgres
def test_simultaneous_posts_create_one_subscriber_and_one_confirmation(
    postgres_url: str, tmp_path: Path
) -> None:
    app = App(load_settings(base_environ(tmp_path, postgres_url)))
    outcomes: list[object] = []
    for i in range(20):
        outcomes += race(app, f"double{i}@example.org")
    with app.sessions() as session:
        subscribers = session.scalar(select(func.count()).select_from(Subscriber))
        confirmations = session.scalar(select(func.count()).select_from(Delivery))
    app.close()
    assert [o for o in outcomes if not isinstance(o, SubscribeOutcome)] == []
    assert sorted(str(o) for o in outcomes).count("confirmation_queued") == 20
    assert sorted(str(o) for o in outcomes).count("throttled") == 20
    assert (subscribers, confirmations) == (20, 20)


def test_sqlite_serialises_the_same_race(sqlite_url: str, tmp_path: Path) -> None:
    app = App(load_settings(base_environ(tmp_path, sqlite_url)))
    outcomes = race(app, "double@example.org")
    app.close()
    assert sorted(str(o) for o in outcomes) == ["confirmation_queued", "throttled"]
