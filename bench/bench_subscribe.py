"""``POST /subscribe`` throughput and latency against the same server with a hello app.

    .venv/bin/python bench/bench_subscribe.py [--count 2000] [--concurrency 8]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/DB] [--no-scheduler]
        [--sending N [--sending-backend outbox|sendgrid]]

For each database (a fresh SQLite file; PostgreSQL too when ``--postgres-url`` or
``NEWSLETTER_BENCH_POSTGRES_URL`` is given -- its schema is DROPPED and recreated):

* the project is the real ``newsletter serve`` (scheduler included unless
  ``--no-scheduler``) in its own process, outbox mail backend;
* the ceiling is ``bench.serving hello``: the same uvicorn configuration in its own
  process, answering 202 without looking at the body;
* the load generator (``bench.loadgen``, this process) posts ``--count`` JSON bodies with
  distinct addresses over ``--concurrency`` keep-alive connections, the same to both.

It prints requests/s, p50/p99, the server's CPU per request (the web process, and with
``+`` the processes it started: ``serve``'s confirmation sender), the load generator's own
CPU per request and its share of one core (near 100% would mean the client, not the
server, sets the pace), the ratio to the ceiling, and how long after the last answer the
last confirmation email was in the outbox (every accepted subscriber must get exactly one).

``--sending N``: the project is measured a second time, on a fresh database, while a
sending worker (``bench.sender``, its own process) queues ``N`` drip emails and delivers
them through the outbox: signups during a send, as with a cron-run ``newsletter deliver``
beside ``serve`` (which runs ``--no-scheduler`` then: it sends the confirmations only). It
prints that run's latencies (and CPU during the load) and checks each of the ``N`` emails
was sent once. ``--sending-backend sendgrid``: the sender posts to a minimal sink
(``bench/sink.py``) instead of writing files, as in production.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bench.bench_dispatch import sink_process
from bench.common import ROOT, free_port, fresh_engine, machine_load, running_server
from bench.loadgen import LoadResult, hammer, request_bytes
from newsletter.db import make_engine

HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def requests(count: int, tag: str) -> list[bytes]:
    return [
        request_bytes(
            "POST",
            "/subscribe",
            json.dumps({"email": f"{tag}{i}@example.org", "first_name": "Bo"}).encode(),
            HEADERS,
        )
        for i in range(count)
    ]


def environ(url: str, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_VAR_DIR": str(workdir / "var"),
        "NEWSLETTER_OUTBOX_DIR": str(workdir / "outbox"),
        "NEWSLETTER_SECRET_KEY": "bench-secret",
        "NEWSLETTER_BASE_URL": "https://news.example",
        "NEWSLETTER_POSTAL_ADDRESS": "Backwise Ltd, 1 Test Street, 10115 Berlin, Germany",
        "NEWSLETTER_FROM_EMAIL": "tips@shop.example",
        "NEWSLETTER_FROM_NAME": "Backwise",
        "NEWSLETTER_ALLOWED_ORIGINS": "https://shop.example",
        "NEWSLETTER_DEFAULT_TIMEZONE": "Europe/Berlin",
        "NEWSLETTER_CONTENT_DIR": str(ROOT / "content"),
        "NEWSLETTER_TEMPLATES_DIR": str(ROOT / "templates" / "emails"),
        "NEWSLETTER_CRON_FILE": str(ROOT / "cron.yaml"),
        "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "10000000/minute",  # one client IP
    }


@dataclass
class Cpu:
    """CPU seconds spent during the measured load."""

    server: float  # the web process
    children: float  # processes it started (the confirmation sender)
    client: float  # the load generator (this process)


@dataclass
class Sending:
    """A sending worker started with the measured load (``bench.sender``)."""

    count: int
    outbox: Path
    sendgrid_url: str = ""  # post to this sink instead of writing the outbox
    sent: int = 0
    seconds: float = 0.0

    @contextmanager
    def running(self, env: dict[str, str]) -> Iterator[None]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sender",
                "--count",
                str(self.count),
                "--outbox",
                str(self.outbox),
                "--sendgrid-url",
                self.sendgrid_url,
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        try:
            if process.stdout.readline().strip() != "QUEUED":
                raise RuntimeError("the sender did not queue its emails")
            yield
            words = process.stdout.readline().split()
            if len(words) != 3 or words[0] != "SENT":
                raise RuntimeError(f"the sender failed: {words!r}")
            self.sent, self.seconds = int(words[1]), float(words[2])
        except BaseException:
            process.kill()
            raise
        finally:
            process.wait(timeout=600)


def measure(
    command: list[str],
    env: dict[str, str],
    load: list[bytes],
    concurrency: int,
    outbox: Path | None,
    sending: Sending | None = None,
    not_confirmations: Callable[[], set[int]] | None = None,
) -> tuple[LoadResult, Cpu, float | None]:
    """(load result, CPU seconds, seconds from the last answer to the last email);
    ``not_confirmations`` (read once the load is over): ledger ids in ``outbox`` that are
    not confirmations."""
    port = free_port()
    with running_server([*command, "--port", str(port)], env, port) as server:
        hammer("127.0.0.1", port, warmup(load), concurrency)
        with sending.running(env) if sending else nullcontext():
            before = server.cpu_seconds(), server.children_cpu_seconds(), time.process_time()
            result = hammer("127.0.0.1", port, load, concurrency)
            ended = time.perf_counter()
            cpu = Cpu(
                server.cpu_seconds() - before[0],
                server.children_cpu_seconds() - before[1],
                time.process_time() - before[2],
            )
        # (leaving ``sending.running`` waits for the sender to finish)
        drained = None
        if outbox is not None:
            wanted = len(load) + len(warmup(load))
            others = not_confirmations() if not_confirmations else set()
            while time.perf_counter() - ended < 120:
                if len(emails_in(outbox) - others) >= wanted:
                    drained = time.perf_counter() - ended
                    break
                time.sleep(0.05)
    return result, cpu, drained


def emails_in(outbox: Path) -> set[int]:
    """The ledger ids of the emails written to ``outbox`` (files are named by id)."""
    return {int(path.stem) for path in outbox.glob("*.eml")}


def sender_rows(url: str) -> list[tuple[int, str]]:
    """(ledger id, status) of every email ``bench.sender`` queued."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            query = text("SELECT id, status FROM deliveries WHERE key LIKE 'bench-send:%'")
            return [(int(row[0]), str(row[1])) for row in conn.execute(query)]
    finally:
        engine.dispose()


def sender_ids(url: str) -> set[int]:
    """The ledger ids of the emails ``bench.sender`` queued."""
    return {row_id for row_id, _ in sender_rows(url)}


def warmup(load: list[bytes]) -> list[bytes]:
    return requests(40, "warmup")


def line(label: str, result: LoadResult, cpu: Cpu) -> str:
    def per_request(seconds: float) -> float:
        return seconds / len(result.latencies) * 1000

    children = f" + {per_request(cpu.children):4.2f}" if cpu.children else ""
    return (
        f"  {label:26} {result.rate:7.0f} req/s  p50 {result.percentile(50):6.1f} ms"
        f"  p99 {result.percentile(99):6.1f} ms  server CPU {per_request(cpu.server):5.2f}"
        f"{children} ms/req  client CPU {per_request(cpu.client):4.2f} ms/req"
        f" ({cpu.client / result.seconds:4.0%} of a core)  statuses {dict(result.statuses)}"
    )


def run(url: str, label: str, args: argparse.Namespace, workdir: Path) -> bool:
    fresh_engine(url).dispose()
    env = environ(url, workdir)
    outbox = workdir / "outbox"
    load = requests(args.count, "reader")
    serve = [str(Path(sys.executable).parent / "newsletter"), "serve"]
    serve += ["--no-scheduler"] if args.no_scheduler else []
    ceiling, ceiling_cpu, _ = measure(
        [sys.executable, "-m", "bench.serving", "hello"], env, load, args.concurrency, None
    )
    project, project_cpu, drained = measure(serve, env, load, args.concurrency, outbox)
    emails = len(emails_in(outbox))
    print(f"{label}: {args.count} requests, concurrency {args.concurrency}, {machine_load()}")
    print(line("ceiling (hello app)", ceiling, ceiling_cpu))
    print(line("POST /subscribe", project, project_cpu))
    print(
        f"  ratio {project.rate / ceiling.rate:.3f}   confirmation emails {emails}"
        f" (expected {args.count + 40}), last one "
        + (f"{drained:.2f} s after the last answer" if drained is not None else "NOT written")
    )
    ok = set(project.statuses) == {202} and emails == args.count + 40
    if not ok:
        print(f"FAIL: {label}: refused requests or missing/duplicate emails {project.bodies}")
    if args.sending:
        ok &= run_sending(url, label, args, workdir, serve)
    return ok


def run_sending(
    url: str, label: str, args: argparse.Namespace, workdir: Path, serve: list[str]
) -> bool:
    """The project again, on a fresh database, while a sender delivers ``--sending``."""
    workdir = workdir / "sending"
    workdir.mkdir()
    if url.startswith("sqlite"):  # a new file (PostgreSQL: the schema is recreated)
        url = f"sqlite:///{workdir / 'bench.db'}"
    fresh_engine(url).dispose()
    env = environ(url, workdir)
    outbox = workdir / "outbox"
    load = requests(args.count, "reader")
    with sink_process() if args.sending_backend == "sendgrid" else nullcontext("") as sink:
        sending = Sending(args.sending, workdir / "sender-outbox", sink)
        # serve's own jobs off: the sender is the only worker sending (as a cron-run
        # ``newsletter deliver`` beside serve); serve still sends the confirmations
        quiet = [*serve, "--no-scheduler"] if "--no-scheduler" not in serve else serve
        project, project_cpu, drained = measure(
            quiet, env, load, args.concurrency, outbox, sending, lambda: sender_ids(url)
        )
    rows = sender_rows(url)
    queued = {row_id for row_id, _ in rows}
    by_serve, by_sender = emails_in(outbox), emails_in(sending.outbox)
    emails = len(by_serve - queued)  # the confirmations
    print(line(f"while sending {args.sending}", project, project_cpu))
    print(
        f"  sender ({args.sending_backend}): {sending.sent} emails in {sending.seconds:.2f} s "
        f"({sending.sent / max(sending.seconds, 1e-9):.0f}/s; the rest by serve's deliver job)"
    )
    # each queued email sent once, by the sender or by serve's deliver job (its outbox)
    by_serve_queued = len(by_serve & queued)
    once = len(queued) == args.sending and not by_serve & by_sender
    once &= sending.sent + by_serve_queued == args.sending and by_sender <= queued
    once &= Counter(status for _, status in rows) == {"sent": args.sending}
    print(
        f"  queued {len(queued)}: {sending.sent} sent by the sender, "
        f"{by_serve_queued} by serve; confirmations {emails} (expected {args.count + 40})"
        + (f", the last {drained:.2f} s after the last answer" if drained is not None else "")
    )
    ok = set(project.statuses) == {202} and emails == args.count + 40 and once
    if not ok:
        print(f"FAIL: {label} while sending: refused requests, or missing/duplicate emails")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-scheduler", action="store_true")
    parser.add_argument("--sending", type=int, default=0, help="emails sent during a 2nd run")
    parser.add_argument("--sending-backend", choices=["outbox", "sendgrid"], default="outbox")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("NEWSLETTER_BENCH_POSTGRES_URL", "")
    )
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory(prefix="nl-bench-subscribe-") as directory:
        targets = [(f"sqlite:///{Path(directory) / 'sqlite' / 'bench.db'}", "sqlite")]
        if args.postgres_url:
            targets.append((args.postgres_url, "postgresql"))
        for url, label in targets:
            if args.only in (None, label):
                (Path(directory) / label).mkdir(exist_ok=True)
                ok &= run(url, label, args, Path(directory) / label)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
