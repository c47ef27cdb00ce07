"""The background process ``newsletter serve`` runs beside uvicorn.

The web process only answers requests and writes; every email is built and sent here,
and SendGrid's event batches are applied here: the scheduler's jobs (unless ``serve
--no-scheduler``), the confirmations and the event inbox's drain, woken through a pipe
(``newsletter.wakeups.WakeLoop``). ``BackgroundProcess.start()`` starts ``python -m
newsletter.cli.background`` with that pipe as its standard input; ``wake()`` (never
blocking, safe from any thread) writes one byte to it after a commit that queued a
confirmation, ``wake_events()`` another after a webhook body was committed to the inbox.
``close()`` closes the pipe: the child serves what it was woken for (a drain stops after
its current transaction: the rest stays pending), stops its scheduler (letting running
jobs finish) and exits. If the web process dies, the pipe closes the same way, so the
child never outlives its server. If the child
dies, the server starts another (after 1 s, doubling to 60 s while children keep dying
young) and ``/healthz`` answers ``degraded`` meanwhile: nothing is lost, the rows stay
queued and every child makes a pass at start.

The child reads the same settings (environment, kept secret key) as the server, which
has already created and migrated the database and checked the cron file. It ignores
SIGINT and SIGTERM (a Ctrl-C in a terminal, or a service manager stopping the group,
reaches every process; the server shuts down and closes the pipe). It runs at the
server's priority: a lower one (``nice 10``) was tried and starved the emails on a busy
machine (seconds for the first confirmation after a start) without a measurable gain for
the answers.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO

from newsletter.app import App
from newsletter.logs import configure_logging
from newsletter.settings import read_secret_key, read_settings
from newsletter.wakeups import CONFIRMATIONS, EVENTS, WEBHOOKS_BUSY, WEBHOOKS_IDLE, WakeLoop

log = logging.getLogger(__name__)

STOP_SECONDS = 60.0  # how long ``close`` waits for the child's last pass and jobs
KILL_WAIT_SECONDS = 10.0  # ... and for it to go once killed
FIRST_RESTART_SECONDS = 1.0  # a child that died is started again after this long ...
MAX_RESTART_SECONDS = 60.0  # ... doubling up to this while children keep dying young
HEALTHY_SECONDS = 60.0  # a child that lived this long resets the delay
SCHEDULER_FLAG = "--scheduler"
VERBOSE_FLAG = "--verbose"


class BackgroundProcess:
    """The child and its wake-up pipe; with ``command``, supervised: a child that dies (a
    crash, the OOM killer, an import that fails) is started again, after ``first_delay``
    seconds, doubling up to ``max_delay`` while each lives less than ``HEALTHY_SECONDS``.
    Nothing is lost meanwhile: the rows stay queued and a new child makes a pass at start.
    ``problem()`` says why there is no child right now (``/healthz`` shows it)."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        *,
        command: list[str] | None = None,
        first_delay: float = FIRST_RESTART_SECONDS,
        max_delay: float = MAX_RESTART_SECONDS,
        stop_seconds: float = STOP_SECONDS,
    ) -> None:
        self.process = process
        self.restarts = 0
        self._command = command
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._stop_seconds = stop_seconds
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._pipe: IO[bytes] | None = self._nonblocking(process)
        self._broken = False  # this child's pipe broke (logged once per child)
        self._down: str | None = None
        self._watcher: threading.Thread | None = None
        if command is not None:
            self._watcher = threading.Thread(
                target=self._watch, name="background-watch", daemon=True
            )
            self._watcher.start()

    @classmethod
    def start(cls, *, scheduler: bool, verbose: bool = False) -> BackgroundProcess:
        """The child, with the scheduler's jobs if ``scheduler``; DEBUG logs if ``verbose``."""
        # Our own interpreter and module; -P: the working directory is not put first on
        # the child's path (a ``secrets.py`` there would shadow the standard library).
        command = [sys.executable, "-P", "-m", __name__]
        command += [SCHEDULER_FLAG] if scheduler else []
        command += [VERBOSE_FLAG] if verbose else []
        return cls(_spawn(command), command=command)

    def problem(self) -> str | None:
        """``None`` while a child runs; else what happened to the last one."""
        with self._lock:
            return self._down

    def wake(self) -> None:
        """Ask for a confirmation pass (after the commit that queued one)."""
        self._write(CONFIRMATIONS)

    def wake_events(self) -> None:
        """Ask for a drain of the event inbox (after the commit that stored a body)."""
        self._write(EVENTS)

    def webhooks_busy(self, busy: bool) -> None:
        """Webhook requests started being answered (True) / none is any more (False): the
        child's drain defers to them."""
        self._write(WEBHOOKS_BUSY if busy else WEBHOOKS_IDLE)

    def _write(self, kind: bytes) -> None:
        with self._lock:
            pipe, process = self._pipe, self.process
        if pipe is None:
            return
        try:
            os.write(pipe.fileno(), kind)
        except BlockingIOError:
            # The pipe is full of wake-ups not read yet: the child reads them all before
            # its next passes, and the poll makes a pass of every kind anyway.
            return
        except (OSError, ValueError) as exc:  # the child is gone (or its pipe was closed)
            with self._lock:
                first = not self._broken and process is self.process
                self._broken = self._broken or first
            if first:
                then = (
                    "a new one is being started"
                    if self._command is not None
                    else "confirmations and SendGrid event batches stay queued until it runs "
                    "again (or a worker's jobs take them)"
                )
                log.error(
                    "the background process (pid %d) cannot be woken (%s); %s",
                    process.pid,
                    exc,
                    then,
                )

    def close(self) -> None:
        """Close the pipe and wait for the child to finish its last pass and jobs; after
        ``stop_seconds`` it is killed (it ignores SIGTERM): a row it had marked ``sending``
        becomes ``unknown`` and is never sent twice, the rest stays queued."""
        self._closing.set()
        with self._lock:
            pipe, self._pipe = self._pipe, None
            process = self.process
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                log.debug("the background process's pipe was already broken")
        try:
            process.wait(timeout=self._stop_seconds)
        except subprocess.TimeoutExpired:
            log.warning(
                "the background process (pid %d) did not stop within %.0f s; killing it",
                process.pid,
                self._stop_seconds,
            )
            process.kill()
            process.wait(timeout=KILL_WAIT_SECONDS)
        if self._watcher is not None:
            self._watcher.join(timeout=KILL_WAIT_SECONDS)

    def _watch(self) -> None:
        assert self._command is not None
        delay = self._first_delay
        while True:
            with self._lock:
                process = self.process
            started = time.monotonic()
            code = process.wait()
            if self._closing.is_set():
                return
            lived = time.monotonic() - started
            delay = self._first_delay if lived >= HEALTHY_SECONDS else delay
            reason = f"exited with {_exit_reason(code)}; restarting"
            with self._lock:
                self._down = reason
            log.error(
                "the background process (pid %d) %s in %.1f s (confirmations and the "
                "scheduler's jobs wait for it; nothing is lost)",
                process.pid,
                reason,
                delay,
            )
            if self._closing.wait(delay):
                return
            try:
                child = _spawn(self._command)
            except OSError as exc:
                log.error("the background process cannot be started: %s", exc)
                delay = min(delay * 2, self._max_delay)
                continue
            with self._lock:
                if self._closing.is_set():  # close() came meanwhile: it waits for the old
                    child.kill()
                    child.wait()
                    return
                old, self._pipe = self._pipe, self._nonblocking(child)
                self.process = child
                self._broken = False
                self._down = None
                self.restarts += 1
            if old is not None:
                try:
                    old.close()
                except OSError:
                    log.debug("the dead child's pipe was already broken")
            log.warning("the background process was started again (pid %d)", child.pid)
            delay = min(delay * 2, self._max_delay)

    @staticmethod
    def _nonblocking(process: subprocess.Popen[bytes]) -> IO[bytes] | None:
        pipe = process.stdin
        if pipe is not None:
            os.set_blocking(pipe.fileno(), False)
        return pipe


def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdin=subprocess.PIPE)  # noqa: S603 - our interpreter


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def main(argv: list[str] | None = None) -> None:
    """The child: confirmations, the event inbox (and jobs) while standard input is open."""
    from newsletter.scheduling import start_scheduler

    arguments = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    settings = read_secret_key(read_settings())
    configure_logging(verbose=VERBOSE_FLAG in arguments, fmt=settings.log_format)
    app = App(settings)
    scheduler = start_scheduler(app) if SCHEDULER_FLAG in arguments else None
    try:
        WakeLoop(app, sys.stdin.fileno(), clock=app.clock).run()
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=True)
        app.close()


if __name__ == "__main__":
    main()
