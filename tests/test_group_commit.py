"""Group commit: many posts' writes in one transaction, each answered only after its
commit; a failing post fails alone; nothing is acknowledged that was not committed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.group_commit import GroupCommit
from newsletter.models import ConsentEvent, Delivery, Subscriber
from newsletter.subscriptions import SubscribeOutcome, SubscribeRequest, subscribe_in
from tests.conftest import NOW


def counts(app: App) -> tuple[int, int, int]:
    with app.sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Subscriber)) or 0,
            session.scalar(select(func.count()).select_from(ConsentEvent)) or 0,
            session.scalar(select(func.count()).select_from(Delivery)) or 0,
        )


def subscribing(app: App, email: str) -> Callable[[Session, dict[str, Any]], SubscribeOutcome]:
    def job(session: Session, facts: dict[str, Any]) -> SubscribeOutcome:
        return subscribe_in(session, app, SubscribeRequest(email=email), now=NOW, facts=facts)

    return job


def run_held(
    writer: GroupCommit,
    jobs: list[Callable[[Session, dict[str, Any]], Any]],
    wake_ups: list[int] | None = None,
) -> list[Any]:
    """Submit ``jobs`` while the writer is held by a first job, so they form one batch;
    ``wake_ups`` gets how often another thread woke the event loop, after each job."""
    release = threading.Event()
    started = threading.Event()

    def hold(_session: Session, _facts: dict[str, Any]) -> str:
        started.set()
        release.wait(10)
        return "held"

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        if wake_ups is not None:
            wake = loop.call_soon_threadsafe

            def counted(*args: Any, **kwargs: Any) -> Any:
                wake_ups.append(1)
                return wake(*args, **kwargs)

            loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        first = asyncio.ensure_future(writer.submit(hold))
        while not started.is_set():
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(writer.submit(job)) for job in jobs]
        await asyncio.sleep(0.05)  # all queued behind the held batch
        release.set()
        done = await asyncio.gather(first, *rest, return_exceptions=True)
        return list(done[1:])

    try:
        return asyncio.run(main())
    finally:
        writer.close()


def test_a_batch_is_answered_with_one_wake_up_of_the_event_loop(app: App) -> None:
    """Each wake-up from the writer thread costs a self-pipe write and read: a batch of
    eight answers takes one (plus one for the first, held, batch)."""
    wake_ups: list[int] = []
    writer = GroupCommit(app.sessions)
    outcomes = run_held(writer, [subscribing(app, f"w{i}@example.org") for i in range(8)], wake_ups)
    assert outcomes == [SubscribeOutcome.CONFIRMATION_QUEUED] * 8
    assert writer.batches == 2
    assert len(wake_ups) == 2


def test_waiting_posts_share_one_transaction(app: App) -> None:
    writer = GroupCommit(app.sessions)
    outcomes = run_held(writer, [subscribing(app, f"r{i}@example.org") for i in range(20)])
    assert outcomes == [SubscribeOutcome.CONFIRMATION_QUEUED] * 20
    assert writer.batches == 2  # the held job's, then all twenty together
    assert counts(app) == (20, 20, 20)


def test_the_same_address_posted_at_once_gives_one_row_and_one_confirmation(app: App) -> None:
    writer = GroupCommit(app.sessions)
    outcomes = run_held(writer, [subscribing(app, "same@example.org") for _ in range(10)])
    assert outcomes == [SubscribeOutcome.CONFIRMATION_QUEUED] + [SubscribeOutcome.THROTTLED] * 9
    assert counts(app) == (1, 10, 1)


def test_an_error_in_one_post_of_a_batch_does_not_fail_the_others(app: App) -> None:
    def broken(session: Session, _facts: dict[str, Any]) -> None:
        subscribe_in(session, app, SubscribeRequest(email="half@example.org"), now=NOW)
        raise ValueError("this post is broken after writing")

    writer = GroupCommit(app.sessions)
    jobs = [subscribing(app, "a@example.org"), broken, subscribing(app, "b@example.org")]
    outcomes = run_held(writer, jobs)
    assert outcomes[0] == outcomes[2] == SubscribeOutcome.CONFIRMATION_QUEUED
    assert isinstance(outcomes[1], ValueError)
    with app.sessions() as session:
        emails = set(session.scalars(select(Subscriber.email)))
    assert emails == {"a@example.org", "b@example.org"}  # the broken post wrote nothing
    assert counts(app) == (2, 2, 2)


def test_nothing_is_acknowledged_when_the_commit_fails(app: App) -> None:
    """A failure between the batch's writes and its commit (here: every commit fails)
    answers every post of the batch with the error; none is reported done."""

    def fail(_session: Session) -> None:
        raise RuntimeError("disk full at commit")

    sessions = app.sessions
    event.listen(sessions, "before_commit", fail)
    try:
        writer = GroupCommit(sessions)
        outcomes = run_held(writer, [subscribing(app, f"r{i}@example.org") for i in range(5)])
    finally:
        event.remove(sessions, "before_commit", fail)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert counts(app) == (0, 0, 0)


def test_a_commit_that_fails_once_is_retried_post_by_post(app: App) -> None:
    failures = [1]

    def fail_once(_session: Session) -> None:
        if failures:
            failures.pop()
            raise RuntimeError("lost the connection at commit")

    sessions = app.sessions
    event.listen(sessions, "before_commit", fail_once)
    try:
        writer = GroupCommit(sessions)
        outcomes = run_held(writer, [subscribing(app, f"r{i}@example.org") for i in range(4)])
    finally:
        event.remove(sessions, "before_commit", fail_once)
    # The held job's batch took the one failure; everything was still committed once.
    assert outcomes == [SubscribeOutcome.CONFIRMATION_QUEUED] * 4
    assert counts(app) == (4, 4, 4)


def test_close_finishes_what_was_submitted(app: App) -> None:
    writer = GroupCommit(app.sessions)

    async def main() -> SubscribeOutcome:
        return await writer.submit(subscribing(app, "late@example.org"))

    assert asyncio.run(main()) is SubscribeOutcome.CONFIRMATION_QUEUED
    writer.close()
    writer.close()  # twice is harmless
    assert counts(app) == (1, 1, 1)


@pytest.mark.parametrize("size", [1, 3])
def test_max_batch_bounds_a_transaction(app: App, size: int) -> None:
    writer = GroupCommit(app.sessions, max_batch=size)
    outcomes = run_held(writer, [subscribing(app, f"r{i}@example.org") for i in range(6)])
    assert outcomes == [SubscribeOutcome.CONFIRMATION_QUEUED] * 6
    assert writer.batches == 1 + 6 // size


@pytest.mark.parametrize("reason", ["bounced", "complained"])
def test_a_suppressed_address_writes_nothing_in_the_shared_transaction(
    app: App, reason: str
) -> None:
    """The upsert itself checks the suppression list: a bounced or complained address
    gets no row, consent or email, and its neighbours in the batch are unaffected."""
    from newsletter.subscriptions import suppress

    with app.sessions() as session, session.begin():
        suppress(session, "gone@example.org", reason, now=NOW)
    writer = GroupCommit(app.sessions)
    jobs = [subscribing(app, "gone@example.org"), subscribing(app, "fine@example.org")]
    outcomes = run_held(writer, jobs)
    assert outcomes == [SubscribeOutcome.SUPPRESSED, SubscribeOutcome.CONFIRMATION_QUEUED]
    assert counts(app) == (1, 1, 1)
    with app.sessions() as session:
        assert session.scalars(select(Subscriber.email)).all() == ["fine@example.org"]


def test_a_forgotten_address_may_subscribe_again(app: App) -> None:
    """Only bounced and complained block: an address suppressed for another reason
    (``forgotten``: erased on request) gets a fresh row, consent and confirmation."""
    from newsletter.subscriptions import suppress

    with app.sessions() as session, session.begin():
        suppress(session, "back@example.org", "forgotten", now=NOW)
    outcomes = run_held(GroupCommit(app.sessions), [subscribing(app, "back@example.org")])
    assert outcomes == [SubscribeOutcome.CONFIRMATION_QUEUED]
    assert counts(app) == (1, 1, 1)
