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
child never outlives its server.

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
from typing import IO

from newsletter.app import App
from newsletter.logs import configure_logging
from newsletter.settings import read_secret_key, read_settings
from newsletter.wakeups import CONFIRMATIONS, EVENTS, WEBHOOKS_BUSY, WEBHOOKS_IDLE, WakeLoop

log = logging.getLogger(__name__)

STOP_SECONDS = 60.0  # how long ``close`` waits for the child's last pass and jobs
SCHEDULER_FLAG = "--scheduler"
VERBOSE_FLAG = "--verbose"


class BackgroundProcess:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._pipe: IO[bytes] | None = process.stdin
        if self._pipe is not None:
            os.set_blocking(self._pipe.fileno(), False)
        self._broken = False

    @classmethod
    def start(cls, *, scheduler: bool, verbose: bool = False) -> BackgroundProcess:
        """The child, with the scheduler's jobs if ``scheduler``; DEBUG logs if ``verbose``."""
        command = [sys.executable, "-m", __name__]  # our own interpreter and module
        command += [SCHEDULER_FLAG] if scheduler else []
        command += [VERBOSE_FLAG] if verbose else []
        return cls(subprocess.Popen(command, stdin=subprocess.PIPE))  # noqa: S603

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
        pipe = self._pipe
        if pipe is None:
            return
        try:
            os.write(pipe.fileno(), kind)
        except BlockingIOError:
            # The pipe is full of wake-ups not read yet: the child reads them all before
            # its next passes, and the poll makes a pass of every kind anyway.
            return
        except OSError as exc:  # the child is gone (or the pipe was closed)
            if not self._broken:
                self._broken = True
                log.error(
                    "the background process (pid %d) cannot be woken (%s); confirmations "
                    "and SendGrid event batches stay queued until it runs again (or a "
                    "worker's jobs take them)",
                    self.process.pid,
                    exc,
                )

    def close(self) -> None:
        """Close the pipe and wait for the child to finish its last pass and jobs."""
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                log.debug("the background process's pipe was already broken")
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("the background process did not stop in time; terminating it")
            self.process.terminate()
            self.process.wait()


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
