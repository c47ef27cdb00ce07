"""``newsletter serve``'s background process is watched: a child that dies is started
again, ``/healthz`` says so meanwhile, and ``close`` ends a child that will not stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from newsletter.cli.background import BackgroundProcess

# A stand-in child that behaves like the real one towards its pipe: it reads wake-ups and
# writes them to a file, and ends at end of file.
READER = (
    "import os, sys\n"
    "out = open(sys.argv[1], 'ab', buffering=0)\n"
    "while (data := os.read(0, 4096)):\n"
    "    out.write(data)\n"
)
# A child that ignores SIGTERM and end of file (a job that runs on and on).
STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)\n"


def _wait(condition: Any, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def _supervised(command: list[str], **options: Any) -> BackgroundProcess:
    return BackgroundProcess(
        subprocess.Popen(command, stdin=subprocess.PIPE), command=command, **options
    )


def test_a_child_that_dies_is_started_again_and_woken_like_the_first(tmp_path: Path) -> None:
    seen = tmp_path / "wakes"
    background = _supervised([sys.executable, "-c", READER, str(seen)], first_delay=0.2)
    try:
        first = background.process
        background.wake()
        assert _wait(lambda: seen.exists() and seen.read_bytes() == b"w")
        assert background.problem() is None
        first.kill()
        assert _wait(lambda: background.problem() is not None)
        assert background.problem() == "exited with signal SIGKILL; restarting"
        background.wake()  # lost (the pipe is broken) -- a new child makes a pass at start
        assert _wait(lambda: background.process is not first and background.problem() is None)
        assert background.restarts == 1
        background.wake()
        assert _wait(lambda: seen.read_bytes() == b"ww")
    finally:
        background.close()
    assert background.process.returncode == 0  # the new child ended at end of file


def test_children_that_keep_dying_are_restarted_ever_more_slowly(tmp_path: Path) -> None:
    started = tmp_path / "starts"
    command = [sys.executable, "-c", f"open({str(started)!r}, 'a').write('x')\nraise SystemExit(3)"]
    background = _supervised(command, first_delay=0.1, max_delay=0.4)
    try:
        assert _wait(lambda: background.restarts >= 4)
        assert _wait(lambda: background.problem() == "exited with code 3; restarting")
        begun = time.monotonic()
        count = background.restarts
        assert _wait(lambda: background.restarts >= count + 2)
        assert time.monotonic() - begun >= 0.6  # at the longest delay by now (0.4 s each)
    finally:
        background.close()
    stopped = started.read_text()
    time.sleep(0.5)
    assert started.read_text() == stopped  # none started after close


def test_close_kills_a_child_that_does_not_stop(caplog: pytest.LogCaptureFixture) -> None:
    background = _supervised([sys.executable, "-c", STUBBORN], stop_seconds=0.5)
    pid = background.process.pid
    assert _wait(lambda: _ignores_sigterm(pid))
    begun = time.monotonic()
    background.close()
    assert time.monotonic() - begun < 5
    assert background.process.returncode == -signal.SIGKILL
    assert any("did not stop within" in r.getMessage() for r in caplog.records)
    assert background.restarts == 0  # a child ended by close is not started again


def _ignores_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_serve_restarts_a_killed_background_process_and_healthz_says_so_meanwhile(
    cli_env: dict[str, Any], tmp_path: Path
) -> None:
    """Started where a ``secrets.py`` lies (the child runs with ``python -P``: the working
    directory shadows nothing), its child killed: a new one sends what was queued."""
    from tests.servers import free_port
    from tests.test_confirmation_sender import NEWSLETTER, _child, _listening

    env = {**os.environ, **cli_env, "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "1000/minute"}
    here = tmp_path / "started-here"
    here.mkdir()
    (here / "secrets.py").write_text("raise SystemExit('the standard library was shadowed')\n")
    port = free_port()
    server = subprocess.Popen(
        [NEWSLETTER, "serve", "--no-scheduler", "--port", str(port)],
        cwd=here,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    outbox = Path(cli_env["NEWSLETTER_OUTBOX_DIR"])
    try:
        assert _wait(lambda: _listening(port, server), 60)
        child = _child(server)
        cmdline = Path(f"/proc/{child}/cmdline")
        # Just after the fork the child still shows serve's command line: wait for exec.
        assert _wait(lambda: b"newsletter.cli.background" in cmdline.read_bytes())
        command = cmdline.read_bytes().split(b"\0")
        assert b"-P" in command
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            client.post("/subscribe", json={"email": "before@example.org"})
            assert _wait(lambda: len(list(outbox.glob("*.eml"))) == 1, 60)
            os.kill(child, signal.SIGKILL)
            health = []  # within the 1 s before the restart
            assert _wait(
                lambda: (
                    health.append(client.get("/healthz").json())
                    or (health[-1]["status"] == "degraded")
                ),
                5,
            )
            health = health[-1:]
            answer = client.post("/subscribe", json={"email": "after@example.org"})
            assert answer.status_code == 202
            assert _wait(lambda: len(list(outbox.glob("*.eml"))) == 2, 60)
            assert _child(server) != child
            health.append(client.get("/healthz").json())
        assert health[0]["status"] == "degraded"
        assert health[0]["background"] == "exited with signal SIGKILL; restarting"
        assert health[1] == {"status": "ok", "database": "ok", "sending": "ok"}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
