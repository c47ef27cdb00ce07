"""``newsletter serve`` killed with SIGKILL while subscribe posts are being group-committed:
every post that was answered 202 has its subscriber, consent record and confirmation row."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from newsletter.app import App
from newsletter.models import ConsentEvent, Delivery, Subscriber
from newsletter.settings import load_settings
from tests.servers import free_port

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve exited early"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("serve did not listen")


def test_sigkill_mid_load_loses_no_acknowledged_subscribe(cli_env: dict[str, Any]) -> None:
    env = {**os.environ, **cli_env, "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "100000/minute"}
    port = free_port()
    server = subprocess.Popen(
        [NEWSLETTER, "serve", "--no-scheduler", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        wait_for_port(port, server)

        def post(worker: int) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                for i in range(10_000):
                    if stop.is_set():
                        return
                    email = f"w{worker}n{i}@example.org"
                    try:
                        response = client.post("/subscribe", json={"email": email})
                    except httpx.HTTPError:
                        return  # the server is gone
                    if response.status_code == 202:
                        with lock:
                            acknowledged.append(email)

        threads = [threading.Thread(target=post, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 80 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.send_signal(signal.SIGKILL)  # in the middle of batches being written
        server.wait()
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert len(acknowledged) >= 80
    app = App(load_settings(cli_env))
    try:
        with app.sessions() as session:
            stored = {
                row.email: row.id
                for row in session.execute(select(Subscriber.email, Subscriber.id))
            }
            consented = set(session.scalars(select(ConsentEvent.subscriber_id)))
            confirmations = set(session.scalars(select(Delivery.subscriber_id)))
    finally:
        app.close()
    missing = [e for e in acknowledged if e not in stored]
    assert missing == []
    ids = {stored[e] for e in acknowledged}
    assert ids <= consented
    assert ids <= confirmations
