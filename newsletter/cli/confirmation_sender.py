"""The confirmation sender process ``newsletter serve`` runs beside uvicorn.

``ConfirmationSender.start()`` starts ``python -m newsletter.cli.confirmation_sender`` with
a pipe on its standard input; ``wake()`` (never blocking, safe from any thread) writes one
byte to it after a commit that queued a confirmation, and the child's loop
(``newsletter.confirmations.run_sender``) sends every confirmation that is due. ``close()``
closes the pipe: the child serves what it was woken for and exits. If the web process dies,
the pipe closes the same way, so no sender outlives its server.

The child reads the same settings (environment, kept secret key) as the server; the server
has already created and migrated the database. It ignores SIGINT: a Ctrl-C in a terminal
reaches the whole process group, and the child ends once the server closes the pipe.
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

STOP_SECONDS = 30.0  # how long ``close`` waits for the child's last pass


class ConfirmationSender:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._pipe: IO[bytes] | None = process.stdin
        if self._pipe is not None:
            os.set_blocking(self._pipe.fileno(), False)
        self._broken = False

    @classmethod
    def start(cls) -> ConfirmationSender:
        command = [sys.executable, "-m", __name__]  # our own interpreter and module
        return cls(subprocess.Popen(command, stdin=subprocess.PIPE))  # noqa: S603

    def wake(self) -> None:
        """Ask for a pass (after the commit that queued a confirmation)."""
        pipe = self._pipe
        if pipe is None:
            return
        try:
            os.write(pipe.fileno(), b"w")
        except BlockingIOError:
            return  # the pipe is full of wake-ups not read yet: one more changes nothing
        except OSError as exc:  # the sender is gone (or the pipe was closed)
            if not self._broken:
                self._broken = True
                log.error(
                    "the confirmation sender (pid %d) cannot be woken (%s); confirmations "
                    "stay queued for the scheduler's deliver job",
                    self.process.pid,
                    exc,
                )

    def close(self) -> None:
        """Close the pipe and wait for the child to finish its last pass."""
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                log.debug("the confirmation sender's pipe was already broken")
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("the confirmation sender did not stop in time; terminating it")
            self.process.terminate()
            self.process.wait()


def main() -> None:
    """The child: confirmations for as long as standard input is open."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = read_secret_key(read_settings())
    configure_logging(verbose=False, fmt=settings.log_format)
    app = App(settings)
    try:
        run_sender(app, sys.stdin.fileno(), clock=app.clock)
    finally:
        app.close()


if __name__ == "__main__":
    main()
