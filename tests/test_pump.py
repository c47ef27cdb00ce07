"""The confirmation pump: its own thread, woken by signals, folding a burst into few
passes, deferring to requests being answered, and never dying of an error."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from newsletter.web.pump import Pump


class Recorder:
    def __init__(self, hold: threading.Event | None = None, fail: bool = False) -> None:
        self.passes = 0
        self.hold = hold
        self.fail = fail
        self.started = threading.Event()

    def __call__(self, pause: Callable[[], None]) -> None:
        self.started.set()
        if self.hold is not None:
            self.hold.wait(10)
        self.passes += 1
        if self.fail:
            raise RuntimeError("the mail backend is down")


def test_kick_returns_after_a_pass_that_started_after_it() -> None:
    run = Recorder()
    pump = Pump(run)
    pump.kick()
    assert run.passes == 1
    pump.kick()
    assert run.passes == 2
    pump.close()


def test_signals_during_a_pass_fold_into_one_more_pass() -> None:
    hold = threading.Event()
    run = Recorder(hold)
    pump = Pump(run)
    first = pump.signal()
    assert run.started.wait(5)
    tickets = [pump.signal() for _ in range(50)]  # a burst while the first pass runs
    hold.set()

    async def wait_all() -> None:
        await pump.wait(first)
        for ticket in tickets:
            await pump.wait(ticket)

    asyncio.run(wait_all())
    assert run.passes == 2
    pump.close()


def test_an_error_in_a_pass_does_not_stop_the_pump(caplog: pytest.LogCaptureFixture) -> None:
    run = Recorder(fail=True)
    pump = Pump(run)
    pump.kick()
    pump.kick()
    assert run.passes == 2
    assert "confirmations: the pass failed" in caplog.text
    pump.close()


def test_pause_defers_to_requests_for_at_most_the_yield_time() -> None:
    busy = [True]
    pump = Pump(Recorder(), busy=lambda: busy[0], yield_seconds=0.2)
    started = time.monotonic()
    pump.pause()
    assert 0.2 <= time.monotonic() - started < 2
    busy[0] = False
    started = time.monotonic()
    pump.pause()
    assert time.monotonic() - started < 0.1
    pump.close()


def test_a_pass_waits_while_requests_are_answered() -> None:
    busy = [True]
    run = Recorder()
    pump = Pump(run, busy=lambda: busy[0], yield_seconds=5)
    pump.signal()
    time.sleep(0.2)
    assert run.passes == 0  # deferring to the requests in flight
    busy[0] = False
    pump.kick()
    assert run.passes >= 1
    pump.close()


def test_close_releases_waiters_and_later_signals_start_nothing() -> None:
    run = Recorder()
    pump = Pump(run)
    pump.close()
    ticket = pump.signal()
    asyncio.run(pump.wait(ticket))  # returns at once: the pump is closed
    assert run.passes == 0
