"""Issue 11: a provider's wait is honoured up to a cap, never crashes ``tick``, and
``newsletter delivery resume`` lifts it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from newsletter.app import App
from newsletter.backoff import MAX_PROVIDER_WAIT, bounded_wait
from newsletter.cli import main
from newsletter.db import transaction
from newsletter.models import Delivery
from newsletter.settings import Settings
from tests.backends import Backend, environ, running_backend
from tests.conftest import NOW
from tests.factories import add_subscribers, queue_deliveries
from tests.sendgrid_server import Fault

LATER = NOW + timedelta(minutes=1)


@pytest.fixture
def sendgrid(tmp_path: Path) -> Iterator[Backend]:
    with running_backend("sendgrid", tmp_path) as backend:
        yield backend


@pytest.fixture
def run(cli_env: dict[str, Any], sendgrid: Backend) -> Callable[..., str]:
    def invoke(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), env=environ(cli_env, sendgrid))
        assert result.exit_code == 0, result.output
        return result.stdout

    return invoke


def queue_tips(make_settings: Callable[..., Settings], count: int) -> None:
    app = App(make_settings())
    with transaction(app.sessions) as session:
        ids = add_subscribers(session, count)
        queue_deliveries(session, ids, item_id="tips/meet-your-ql")
    app.close()


def statuses(make_settings: Callable[..., Settings]) -> list[str]:
    app = App(make_settings())
    with app.sessions() as session:
        found = list(session.scalars(select(Delivery.status).order_by(Delivery.id)))
    app.close()
    return found


@pytest.mark.parametrize(
    "headers",
    [{"Retry-After": "1e12"}, {"Retry-After": "1000000000"}, {"Retry-After": "inf"}],
    ids=["1e12", "31-years", "inf"],
)
def test_a_huge_wait_is_capped_and_the_chunk_stays_queued(
    make_settings: Callable[..., Settings],
    run: Callable[..., str],
    sendgrid: Backend,
    headers: dict[str, str],
) -> None:
    """``tick`` answers normally, every worker waits at most the cap, nothing is
    ``unknown``; ``delivery resume`` says it lifted the backoff and the next tick sends."""
    queue_tips(make_settings, 3)
    assert sendgrid.sendgrid is not None
    sendgrid.sendgrid.inject(Fault(status=429, headers=headers), times=1)
    output = run("tick", "--now", LATER.isoformat(), "--job", "deliver")
    wait = MAX_PROVIDER_WAIT if headers["Retry-After"] != "inf" else 60.0
    until = (LATER + timedelta(seconds=wait)).isoformat()
    assert output == (
        f'deliver: {{"backoff_until": "{until}", "batches": 1, "claimed": 3, "commits": 3, '
        '"outcomes": {"retry": 3}, "sent": 0}\n'
    )
    assert statuses(make_settings) == ["queued"] * 3
    if until > time_now_iso():  # the backoff is still in force: resume says it lifts it
        assert run("delivery", "resume") == (
            "sending was not halted\n"
            f"provider backoff until {until} cleared (HTTP 429 rate limited: too many requests)\n"
        )


def time_now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


def test_x_ratelimit_reset_in_milliseconds_is_read_as_milliseconds(
    make_settings: Callable[..., Settings], run: Callable[..., str], sendgrid: Backend
) -> None:
    """A reset 40 s ahead, written in epoch milliseconds, is a 40 s wait, not 55 years."""
    queue_tips(make_settings, 2)
    assert sendgrid.sendgrid is not None
    reset = str(int((time.time() + 40) * 1000))
    sendgrid.sendgrid.inject(Fault(status=429, headers={"X-RateLimit-Reset": reset}), times=1)
    output = run("tick", "--now", LATER.isoformat(), "--job", "deliver")
    assert '"outcomes": {"retry": 2}' in output
    app = App(make_settings())
    with app.sessions() as session:
        rows = list(session.scalars(select(Delivery)))
    app.close()
    waits = {(r.due_at - LATER).total_seconds() for r in rows}
    assert all(35 <= w <= 41 for w in waits), waits


def test_resume_lifts_a_backoff_so_the_next_tick_sends(
    make_settings: Callable[..., Settings], run: Callable[..., str], sendgrid: Backend
) -> None:
    """A backoff far in the future (set with the real clock) is cleared by ``resume``."""
    from datetime import UTC, datetime

    queue_tips(make_settings, 2)
    assert sendgrid.sendgrid is not None
    now = datetime.now(UTC).replace(microsecond=0)
    sendgrid.sendgrid.inject(Fault(status=429, headers={"Retry-After": "1e12"}), times=1)
    run("tick", "--now", now.isoformat(), "--job", "deliver")
    until = (now + timedelta(seconds=MAX_PROVIDER_WAIT)).isoformat()
    assert run("delivery", "resume") == (
        "sending was not halted\n"
        f"provider backoff until {until} cleared (HTTP 429 rate limited: too many requests)\n"
    )
    assert run("delivery", "resume") == "sending was not halted\n"
    # The rows themselves wait their capped retry; as of then, the next tick sends them.
    output = run("tick", "--now", until, "--job", "deliver")
    assert '"sent": 2' in output
    assert statuses(make_settings) == ["sent", "sent"]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(-5.0, 0.0), (0.0, 0.0), (30.0, 30.0), (1e12, MAX_PROVIDER_WAIT), (float("nan"), 3600.0)],
    ids=["negative", "zero", "plain", "huge", "nan"],
)
def test_bounded_wait(seconds: float, expected: float) -> None:
    assert bounded_wait(seconds) == expected
