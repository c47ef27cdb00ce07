"""Group commit: many requests' writes in one transaction, each answered after the commit.

One writer thread takes the jobs that are waiting (up to ``max_batch``), runs them one
after the other in a single transaction and commits once; only then is each job's result
(or error) handed back to its caller. So an answer is never given for a write that was not
committed, and N concurrent requests cost one ``BEGIN IMMEDIATE`` and one commit on SQLite
(whose single writer otherwise queues every request on the busy handler) and one commit on
PostgreSQL.

A job is ``job(session, batch)``: it works in the shared session and may keep per-batch
facts in ``batch`` (a dict, e.g. which webhook types are listened to). Jobs of one kind
may also offer ``many`` to run a whole batch of them in fewer statements (``run_jobs``).
A job must not have effects outside the database: when one job of a batch raises, or the
commit fails, the transaction is rolled back and every job of the batch is run again
alone, in its own transaction, so the failing one fails alone and the others still
commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from newsletter.db import transaction

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[Session, dict[str, Any]], T]
MAX_BATCH = 64


@dataclass
class _Pending(Generic[T]):
    job: Job[T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]


class GroupCommit:
    """A writer thread over ``sessions``; ``await submit(job)`` returns after the commit."""

    def __init__(
        self, sessions: sessionmaker[Session], *, max_batch: int = MAX_BATCH, name: str = "writer"
    ) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._name = name
        self._queue: queue.SimpleQueue[_Pending[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0  # how many transactions were committed (for tests and logs)

    async def submit(self, job: Job[T]) -> T:
        """Run ``job`` in the next batch; its result once that batch is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._start()
        self._queue.put(_Pending(job, loop, future))
        return await future

    def close(self) -> None:
        """Finish the jobs already submitted, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[_Pending[Any]]) -> None:
        try:
            results = self._together(batch)
        except Exception:
            log.info("a batch of %d writes failed; running them one by one", len(batch))
            for pending in batch:
                try:
                    (result,) = self._together([pending])
                except Exception as exc:
                    _resolve([(pending, None, exc)])
                else:
                    _resolve([(pending, result, None)])
            return
        _resolve([(pending, result, None) for pending, result in zip(batch, results, strict=True)])

    def _together(self, batch: list[_Pending[Any]]) -> list[Any]:
        """Every job in one transaction; returns only after the commit."""
        facts: dict[str, Any] = {}
        with transaction(self._sessions) as session:
            results = run_jobs(session, facts, [pending.job for pending in batch])
        self.batches += 1
        return results


def run_jobs(session: Session, facts: dict[str, Any], jobs: list[Job[Any]]) -> list[Any]:
    """Each job's result, in order. Jobs that share a ``many(session, facts, jobs)``
    (a batch of the same kind of write) are handed to it together, to be written in
    fewer statements; it must give the results running them one by one would."""
    many = getattr(jobs[0], "many", None)
    if len(jobs) > 1 and many is not None and all(getattr(j, "many", None) == many for j in jobs):
        results = list(many(session, facts, jobs))
        if len(results) != len(jobs):
            raise RuntimeError(f"{many!r} gave {len(results)} results for {len(jobs)} jobs")
        return results
    return [job(session, facts) for job in jobs]


def _resolve(outcomes: list[tuple[_Pending[Any], Any, Exception | None]]) -> None:
    """Answer each job (its result, or its error) in its own event loop: one wake-up of
    each loop for the whole batch, not one per job (each costs a write to the loop's
    self-pipe here and a read there)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending[Any], Any, Exception | None]]]
    by_loop = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, answers in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, answers)
        except RuntimeError:  # the caller's event loop is closed: nobody to answer
            log.debug("%d writes finished after their event loop closed", len(answers))


def _settle(answers: list[tuple[_Pending[Any], Any, Exception | None]]) -> None:
    for pending, result, error in answers:
        if pending.future.done():  # the caller went away (client disconnect)
            continue
        if error is not None:
            pending.future.set_exception(error)
        else:
            pending.future.set_result(result)
