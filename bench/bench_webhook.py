"""Load test of ``POST /webhooks/sendgrid`` on loopback against a real uvicorn server.

    .venv/bin/python bench/bench_webhook.py [--batches 100] [--events 1000] [--concurrency 8]
        [--replays 10] [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/DB]

For each database (a SQLite file; PostgreSQL too when ``--postgres-url`` or
``NEWSLETTER_BENCH_POSTGRES_URL`` is given -- its schema is DROPPED and recreated) it:

1. migrates, seeds subscribers and ``unknown`` deliveries (so reconciling has work);
2. starts ``uvicorn`` in its own process with a fresh EC P-256 verification key;
3. signs every body beforehand (SendGrid's cost, not ours), then posts ``--batches``
   batches of ``--events`` events with at most ``--concurrency`` requests in flight, plus
   ``--replays`` batches posted again with new ``sg_event_id`` s (SendGrid's duplicates);
4. counts the stored rows afterwards: exactly ``batches * events`` must be there, each
   once, and every request must have been answered 200. The webhook answers once the body
   is in the event inbox; the events are applied right after by the drain, which ``serve``
   runs in its background process (before: a thread of the web process). So two figures:
   the *acceptance* rate (requests answered per second, the one compared with the
   ceilings) and the *end-to-end* rate (from the first request until every event is
   stored and every inbox body applied, polled every 50 ms). Server CPU is read from
   ``/proc`` for each, as ``web + background`` (the web process, then the processes it
   started): per request while answering, and per request end to end (answering plus
   applying). While the drain runs, one empty signed batch is posted every 0.1 s and its
   answer timed ("answered while draining": what SendGrid sees while a backlog is
   applied);
5. posts the same requests, with the same client (``bench.loadgen``), to two *ceilings*
   under the same uvicorn set-up (``bench.serving``): ``verify`` reads the body, checks
   the signature and answers 200; ``verify-parse`` also runs ``parse_batch``. The
   project is the real ``newsletter serve --no-scheduler``.

It prints requests/second, events/second and the p50/p99/max latency per database and
for its ceiling, and the throughput as a share of that ceiling (the number to compare
across machines and runs). Against code without the inbox (no ``event_inbox`` table) the
end-to-end figure is the acceptance figure: everything was applied before the answer.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, create_engine, func, insert, inspect, select, text

from newsletter.models import Delivery, ProviderEvent, Subscriber

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Server, free_port, fresh_engine, machine_load, running_server
from bench.loadgen import hammer, request_bytes

ROOT = Path(__file__).resolve().parents[1]
SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
SUBSCRIBERS = 5000
PROBE_SECONDS = 0.1
UNKNOWN_DELIVERIES = 2000
JSON_HEADERS = [(b"content-type", b"application/json")]
MIX = [  # SendGrid's usual proportions, roughly
    ("processed", 30),
    ("delivered", 30),
    ("open", 20),
    ("click", 8),
    ("deferred", 5),
    ("bounce", 2),
    ("unsubscribe", 1),
    ("spamreport", 1),
    ("dropped", 1),
    ("group_unsubscribe", 2),
]


@dataclass
class Result:
    database: str
    requests: int
    events: int
    seconds: float
    latencies: list[float]
    stored: int
    expected: int
    statuses: dict[int, int]
    cpu: float = 0.0  # server CPU seconds while answering
    settled_seconds: float = 0.0  # first request until every event is stored and applied
    settled_cpu: float = 0.0  # server CPU seconds over that time
    child_cpu: float = 0.0  # the server's background process's CPU while answering ...
    settled_child_cpu: float = 0.0  # ... and until settled
    probes: list[float] = field(default_factory=list)  # answers while the drain ran
    ceiling: Result | None = None
    parse_ceiling: Result | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def line(self) -> str:
        ordered = sorted(self.latencies)
        p50 = ordered[len(ordered) // 2]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"{self.database:10} {self.requests:5d} requests {self.requests / self.seconds:7.1f}"
            f" req/s {self.events / self.seconds:9.0f} events/s  p50 {p50 * 1000:7.1f} ms"
            f"  p99 {p99 * 1000:7.1f} ms  max {ordered[-1] * 1000:7.1f} ms  stored "
            f"{self.stored}/{self.expected}  statuses {self.statuses}"
            f"  CPU {self.cpu / self.requests * 1000:6.1f}"
            f" + {self.child_cpu / self.requests * 1000:.1f} ms/request\n"
            f"{'':10} end to end (stored and applied): {self.settled_seconds:6.2f} s"
            f" {self.requests / self.settled_seconds:7.1f} req/s"
            f" {self.events / self.settled_seconds:9.0f} events/s"
            f"  CPU {self.settled_cpu / self.requests * 1000:6.1f}"
            f" + {self.settled_child_cpu / self.requests * 1000:.1f} ms/request"
            + _probe_line(self.probes)
        )

    def ceiling_line(self) -> str:
        lines = []
        for ceiling, what in ((self.ceiling, "verify-only"), (self.parse_ceiling, "verify+parse")):
            if ceiling is None:
                continue
            ordered = sorted(ceiling.latencies)
            p50 = ordered[len(ordered) // 2]
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            lines.append(
                f"  {what:12} {ceiling.rate:7.1f} req/s  p50 {p50 * 1000:7.1f} ms  p99"
                f" {p99 * 1000:7.1f} ms  statuses {ceiling.statuses}"
                f"  CPU {ceiling.cpu / ceiling.requests * 1000:6.1f} ms/request"
                f"   project/ceiling accepted {self.rate / ceiling.rate:6.3f}"
                f"  end to end {self.requests / self.settled_seconds / ceiling.rate:6.3f}"
            )
        return "\n".join(lines)


def _probe_line(probes: list[float]) -> str:
    if not probes:
        return ""
    ordered = sorted(probes)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"\n{'':10} answered while draining: {len(ordered)} probes, p50 {p50 * 1000:.1f} ms"
        f"  p99 {p99 * 1000:.1f} ms  max {ordered[-1] * 1000:.1f} ms"
    )


def prepare(url: str) -> None:
    engine = fresh_engine(url)
    now = time.time()
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(now - 3600, UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(Subscriber),
            [
                {
                    "public_id": f"p{n:030d}",
                    "email": f"reader{n}@example.com",
                    "timezone": "UTC",
                    "status": "active",
                    "tags": [],
                    "attributes": {},
                    "created_at": at,
                    "updated_at": at,
                    "confirmed_at": at,
                    "soft_bounces": 0,
                }
                for n in range(SUBSCRIBERS)
            ],
        )
        conn.execute(
            insert(Delivery),
            [
                {
                    "key": f"bench:{n}",
                    "kind": "drip",
                    "item_id": "tips/x",
                    "status": "unknown",
                    "attempts": 1,
                    "due_at": at,
                    "created_at": at,
                    "updated_at": at,
                }
                for n in range(UNKNOWN_DELIVERIES)
            ],
        )
    engine.dispose()


def make_batches(batches: int, events: int, seed: int = 7) -> list[list[dict[str, Any]]]:
    rng = random.Random(seed)
    names = [name for name, weight in MIX for _ in range(weight)]
    base = int(time.time()) - 600
    out = []
    for b in range(batches):
        batch = []
        for e in range(events):
            n = b * events + e
            name = rng.choice(names)
            event: dict[str, Any] = {
                "email": f"reader{rng.randrange(SUBSCRIBERS * 2)}@example.com",
                "event": name,
                "timestamp": base + n % 600,
                "sg_event_id": f"ev-{n:012d}",
                "sg_message_id": f"MSG{n:012d}.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5F-9.0",
                "smtp-id": f"<MSG{n:012d}@ismtpd0039p1iad1.sendgrid.net>",
                "category": ["drip", "tips"],
                "delivery_id": str(rng.randrange(1, UNKNOWN_DELIVERIES * 3)),
            }
            if name == "bounce":
                event.update(type=rng.choice(["bounce", "blocked"]), reason="550 5.1.1 no user")
            if name == "dropped":
                event["reason"] = "Bounced Address"
            if name == "click":
                event["url"] = "https://shop.example/stretches"
            batch.append(event)
        out.append(batch)
    return out


def run(url: str, label: str, args: argparse.Namespace, workdir: Path) -> Result:
    prepare(url)
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    batches = make_batches(args.batches, args.events)
    replays = [
        [{**e, "sg_event_id": "retry-" + e["sg_event_id"]} for e in batch]
        for batch in random.Random(3).sample(batches, min(args.replays, len(batches)))
    ]
    stamp = str(int(time.time()))
    bodies = []
    for batch in batches + replays:
        body = json.dumps(batch, separators=(",", ":")).encode()
        signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE: base64.b64encode(signature).decode(),
            TIMESTAMP: stamp,
        }
        bodies.append((body, headers))
    random.Random(5).shuffle(bodies)
    probe_signature = key.sign(stamp.encode() + b"[]", ec.ECDSA(hashes.SHA256()))
    probe = (
        b"[]",
        {
            "Content-Type": "application/json",
            SIGNATURE: base64.b64encode(probe_signature).decode(),
            TIMESTAMP: stamp,
        },
    )
    environ = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_VAR_DIR": str(workdir / "var"),
        "NEWSLETTER_SECRET_KEY": "bench-secret",
        "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY": public,
        "PYTHONPATH": str(ROOT),
    }
    serve = [str(Path(sys.executable).parent / "newsletter"), "serve", "--no-scheduler"]
    ceiling = serve_and_post(
        [sys.executable, "-m", "bench.serving", "verify"], environ, bodies, args, "ceiling"
    )
    parse_ceiling = serve_and_post(
        [sys.executable, "-m", "bench.serving", "verify-parse"],
        environ,
        bodies,
        args,
        "verify+parse",
    )
    expected = args.batches * args.events
    # Polled while the server drains: a plain engine, so on SQLite a poll is a WAL read
    # that never queues for the write lock (``make_engine`` begins every transaction with
    # ``BEGIN IMMEDIATE``).
    engine = create_engine(url)
    try:
        result = serve_and_post(
            serve,
            environ,
            bodies,
            args,
            label,
            settled=lambda: _settled(engine, expected),
            probe=probe,
        )
        with engine.connect() as conn:
            result.stored = int(conn.scalar(select(func.count()).select_from(ProviderEvent)) or 0)
    finally:
        engine.dispose()
    result.events = sum(len(json.loads(b)) for b, _ in bodies)
    result.expected = expected
    result.ceiling = ceiling
    result.parse_ceiling = parse_ceiling
    return result


def _settled(engine: Engine, expected: int) -> bool:
    """Every inbox body applied (where there is an inbox) and every event stored. The
    cheap question first: counting 100,000 events every poll would compete with the drain."""
    with engine.connect() as conn:
        if inspect(conn).has_table("event_inbox"):
            pending = conn.scalar(
                text(
                    "SELECT count(*) FROM event_inbox WHERE applied_at IS NULL AND problem IS NULL"
                )
            )
            if pending:
                return False
        stored = int(conn.scalar(select(func.count()).select_from(ProviderEvent)) or 0)
        return stored >= expected


def serve_and_post(
    command: list[str],
    environ: dict[str, str],
    bodies: list[tuple[bytes, dict[str, str]]],
    args: argparse.Namespace,
    label: str,
    settled: Callable[[], bool] = lambda: True,
    probe: tuple[bytes, dict[str, str]] | None = None,
) -> Result:
    """Start ``command`` (a server), post every body, wait until ``settled()``; meanwhile
    post ``probe`` (an empty signed batch) every ``PROBE_SECONDS`` and time its answers:
    how the server answers while its drain runs."""
    port = free_port()
    load = [request_bytes("POST", "/webhooks/sendgrid", body, headers) for body, headers in bodies]
    with running_server([*command, "--port", str(port)], environ, port) as server:
        _until_children_idle(server)
        cpu = server.cpu_seconds()
        child_cpu = server.children_cpu_seconds()
        started = time.perf_counter()
        posted = hammer("127.0.0.1", port, load, args.concurrency)
        answered_cpu = server.cpu_seconds() - cpu
        answered_child_cpu = server.children_cpu_seconds() - child_cpu
        deadline = started + 600
        probes: list[float] = []
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not settled() and time.perf_counter() < deadline:
            if probe is None:
                time.sleep(0.05)
                continue
            sent = time.perf_counter()
            connection.request("POST", "/webhooks/sendgrid", probe[0], probe[1])
            answer = connection.getresponse()
            answer.read()
            probes.append(time.perf_counter() - sent)
            assert answer.status == 200, answer.status
            time.sleep(PROBE_SECONDS)
        connection.close()
        settled_seconds = time.perf_counter() - started
        settled_cpu = server.cpu_seconds() - cpu
        settled_child_cpu = server.children_cpu_seconds() - child_cpu
    return Result(
        database=label,
        requests=len(bodies),
        events=0,
        seconds=posted.seconds,
        latencies=posted.latencies,
        stored=0,
        expected=0,
        statuses=dict(posted.statuses),
        cpu=answered_cpu,
        settled_seconds=settled_seconds,
        settled_cpu=settled_cpu,
        child_cpu=answered_child_cpu,
        settled_child_cpu=settled_child_cpu,
        probes=probes,
    )


def _until_children_idle(server: Server, longest: float = 30.0) -> None:
    """Wait until the server's background process has started (its CPU stays put for
    half a second): serve binds its port before starting it, and its imports are not the
    requests' cost."""
    deadline = time.monotonic() + longest
    last = server.children_cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = server.children_cpu_seconds()
        if now == last:
            return
        last = now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--replays", type=int, default=10)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("NEWSLETTER_BENCH_POSTGRES_URL", "")
    )
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory(prefix="nl-bench-webhook-") as directory:
        workdir = Path(directory)
        targets = [(f"sqlite:///{workdir / 'bench.db'}", "sqlite")]
        if args.postgres_url:
            targets.append((args.postgres_url, "postgresql"))
        for url, label in targets:
            result = run(url, label, args, workdir)
            print(f"{label}: {machine_load()}", flush=True)
            print(result.line(), flush=True)
            print(result.ceiling_line(), flush=True)
            ceiling_statuses = set(result.ceiling.statuses) if result.ceiling else {200}
            if result.stored != result.expected or {*result.statuses, *ceiling_statuses} != {200}:
                print(f"FAIL: {label}: events lost, duplicated or refused", flush=True)
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
