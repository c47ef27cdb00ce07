"""The background process ``newsletter serve`` runs beside uvicorn.

The web process only answers requests and writes; every email is built and sent here:
the scheduler's jobs (unless ``serve --no-scheduler``) and the confirmations, woken
through a pipe (``newsletter.confirmations.run_sender``). ``BackgroundProcess.start()``
starts ``python -m newsletter.cli.background`` with that pipe as its standard input;
``wake()`` (never blocking, safe from any thread) writes one byte to it after a commit
that queued a confirmation. ``close()`` closes the pipe: the child serves what it was
woken for, stops its scheduler (letting running jobs finish) and exits. If the web process
dies, the pipe closes the same way, so the child never outlives its server.

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
from newsletter.confirmations import run_sender
from newsletter.logs import configure_logging
from newsletter.settings import read_secret_key, read_settings

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
        pipe = self._pipe
        if pipe is None:
            return
        try:
            os.write(pipe.fileno(), b"w")
        except BlockingIOError:
            return  # the pipe is full of wake-ups not read yet: one more changes nothing
        except OSError as exc:  # the child is gone (or the pipe was closed)
            if not self._broken:
                self._broken = True
                log.error(
                    "the background process (pid %d) cannot be woken (%s); confirmations "
                    "stay queued until it runs again",
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
    """The child: confirmations (and jobs) for as long as standard input is open."""
    from newsletter.scheduling import start_scheduler

    arguments = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    settings = read_secret_key(read_settings())
    configure_logging(verbose=VERBOSE_FLAG in arguments, fmt=settings.log_format)
    app = App(settings)
    scheduler = start_scheduler(app) if SCHEDULER_FLAG in arguments else None
    try:
        run_sender(app, sys.stdin.fileno(), clock=app.clock)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=True)
        app.close()


if __name__ == "__main__":
    main()
