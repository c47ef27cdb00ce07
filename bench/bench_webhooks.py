"""Outgoing webhook throughput to a local sink, as a ratio to a bare keep-alive client.

    .venv/bin/python bench/bench_webhooks.py [--count 3000] [--endpoints 4] [--database URL]

Starts a minimal keep-alive HTTP sink (HTTP/1.1, answers 200 to every POST) in its own
process, records ``--count`` events spread over ``--endpoints`` endpoints (all pointing at
the sink) through ``record_events``, and measures, in the same run against the same sink:

(a) the ``webhooks`` job (``deliver_webhooks``): per-endpoint claims, signing, DNS check,
    ordered sends, outcomes committed per batch - everything a real run does;
(b) the ceiling: a bare keep-alive ``httpx.Client``, one thread per endpoint (the job's
    concurrency), posting the very same bodies with a precomputed signature header.

It prints events/second for both and the ratio (a)/(b). The database defaults to a fresh
SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fresh_engine
from newsletter.app import App
from newsletter.db import transaction
from newsletter.models import WebhookDelivery, WebhookEvent
from newsletter.settings import load_settings
from newsletter.webhooks.delivery import deliver_webhooks
from newsletter.webhooks.outbox import record_events
from newsletter.webhooks.sender import NO_DELAY
from newsletter.webhooks.service import add_webhook
from newsletter.webhooks.signing import signature_header
from tests.servers import free_port

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


# The sink runs in its own interpreter, started with this code only (fast to start).
SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/", content=b"{}")
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("the sink did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--database", default="")
    args = parser.parse_args()
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    try:
        _wait_for_port(port)
        with tempfile.TemporaryDirectory() as tmp:
            measure(args, port, Path(tmp))
    finally:
        sink.terminate()
        sink.wait(timeout=10)


def measure(args: argparse.Namespace, port: int, tmp: Path) -> None:
    url = args.database or f"sqlite:///{tmp / 'bench.db'}"
    fresh_engine(url).dispose()
    settings = load_settings(
        {
            "NEWSLETTER_VAR_DIR": str(tmp),
            "NEWSLETTER_DATABASE_URL": url,
            "NEWSLETTER_SECRET_KEY": "bench",
            "NEWSLETTER_WEBHOOK_ALLOW_PRIVATE": "true",
            "NEWSLETTER_WEBHOOK_CONCURRENCY": str(args.endpoints),
            "NEWSLETTER_WEBHOOK_BATCH_SIZE": "500",
        }
    )
    app = App(settings)
    secrets = []
    for n in range(args.endpoints):
        hook_url = f"http://127.0.0.1:{port}/hook/{n}"
        secrets.append(add_webhook(app, hook_url, ["*"], now=NOW).secret)
    per = args.count // args.endpoints
    with transaction(app.sessions) as session:
        # each endpoint subscribes to every type: one event fans out to all endpoints
        record_events(
            session, [("email.sent", {"n": n, "pad": "x" * 200}) for n in range(per)], now=NOW
        )
    with app.sessions() as session:
        bodies = list(session.scalars(select(WebhookEvent.body).order_by(WebhookEvent.id)))
        total = len(list(session.scalars(select(WebhookDelivery.id))))

    def bare(index: int) -> None:
        transport = httpx.HTTPTransport(socket_options=NO_DELAY)
        with httpx.Client(timeout=10, transport=transport) as client:
            for body in bodies:
                data = body.encode()
                header = signature_header([secrets[index]], int(time.time()), data)
                client.post(
                    f"http://127.0.0.1:{port}/hook/{index}",
                    content=data,
                    headers={"Content-Type": "application/json", "Newsletter-Signature": header},
                )

    started = time.perf_counter()  # the ceiling first: the sink is warm for the job
    with ThreadPoolExecutor(args.endpoints) as pool:
        list(pool.map(bare, range(args.endpoints)))
    ceiling = time.perf_counter() - started
    started = time.perf_counter()
    report = deliver_webhooks(app, NOW)
    job = time.perf_counter() - started
    assert report["delivered"] == total, report
    app.close()
    print(f"events: {total} ({args.endpoints} endpoints x {len(bodies)}), database {url}")
    print(f"(a) webhooks job:        {total / job:8.0f} events/s ({job:.2f} s)")
    print(f"(b) bare keep-alive:     {total / ceiling:8.0f} events/s ({ceiling:.2f} s)")
    print(f"ratio (a)/(b): {ceiling / job:.2f}")


if __name__ == "__main__":
    main()
