"""``deliver()`` end to end into a minimal sink, against a bare client with the same bodies.

    .venv/bin/python bench/bench_dispatch.py [--count 20000] [--backend sendgrid|outbox]
        [--item tips/meet-your-ql] [--batch-size 1000] [--database-url URL] [--analyze]
        [--workers N] [--history N]

A fresh database (a SQLite file in a temporary folder, or ``--database-url``, whose schema
``public`` is DROPPED) gets ``--count`` subscribers with distinct names and one queued
delivery each, then ``deliver_due`` runs until the queue is empty: claim, render, compose,
check, request, record -- the real path, ledger and all.

``sendgrid``: the mailer posts to ``bench/sink.py`` (its own process: reads each body,
answers 202, validates nothing). The ceiling, in the same run against the same sink, is a
bare keep-alive ``httpx.Client`` (the library ``SendGridMailer`` uses) with as many
threads as the mailer has, posting the very bodies the mailer sent, built beforehand.

``outbox``: the ceiling is writing the same ``.eml`` bytes to files the same way
(temporary name, rename), without building them.

``--workers N`` (N > 1): N worker processes (as ``newsletter worker`` scales out), each
with its own ``App`` and worker name, run ``deliver_due`` on the same queue from one start
signal until it is empty; the figure is the emails over the time from the start to the
last worker's end, and the CPU is all the workers' together. Afterwards every row must be
``sent`` after one attempt and the bodies posted (SendGrid) must hold every delivery id
exactly once.

``--history N``: before the run, N other subscribers each get one email sent three days
ago (ledger key ``old:<id>``): the history a shop's earlier sends leave, which a claim must
not read its way through (its cap counts the last week's sends of the batch's subscribers
only). The figures count only the run's emails.

Prints project emails/s (and per CPU-second), ceiling emails/s and the ratio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Empty
from typing import Any

import httpx
from sqlalchemy import Engine, bindparam, func, select, text

from newsletter.app import App
from newsletter.delivery.base import Mailer
from newsletter.delivery.sendgrid import SendGridMailer
from newsletter.dispatch import deliver_due
from newsletter.models import Delivery, UTCDateTime
from newsletter.settings import load_settings

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_planning import CpuMeter
from bench.common import fresh_engine

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
API_KEY = "SG.bench-key"
HISTORY_KEY = "old"  # ledger keys of the --history rows
CONCURRENCY = 4  # SendGridMailer's default: the threads of one mailer, and of the ceiling


@contextmanager
def sink_process() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "sink.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if len(line) != 2 or line[0] != "LISTENING":
            raise RuntimeError(f"the sink did not start: {line!r}")
        yield line[1]
    finally:
        process.terminate()
        process.wait(timeout=10)


def add_history(engine: Engine, count: int, item_id: str) -> None:
    """``count`` other subscribers, each with one email of ``item_id`` sent three days
    ago (``--history``)."""
    if count <= 0:
        return
    sent = NOW - timedelta(days=3)
    populate(engine, count, item_id, prefix=HISTORY_KEY, key=HISTORY_KEY, due=sent)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE deliveries SET status = 'sent', attempts = 1, sent_at = due_at, "
                "updated_at = due_at WHERE key LIKE :pattern"
            ),
            {"pattern": f"{HISTORY_KEY}:%"},
        )


def populate(
    engine: Engine,
    count: int,
    item_id: str,
    *,
    prefix: str = "reader",
    key: str = "bench",
    due: datetime = NOW,
) -> None:
    """``count`` subscribers (``<prefix><n>@example.org``, distinct names, some with
    HTML-special characters) and one drip delivery of ``item_id`` each, queued at ``due``
    under the ledger key ``<key>:<id>``, in two set-based statements."""
    json_type = "::json" if engine.dialect.name == "postgresql" else ""
    people = f"""
        WITH RECURSIVE seq(n) AS (
            SELECT CAST(1 AS INTEGER) UNION ALL SELECT n + 1 FROM seq WHERE n < :last
        )
        INSERT INTO subscribers (public_id, email, first_name, timezone, status, tags,
            attributes, created_at, updated_at, confirmed_at, soft_bounces)
        SELECT :prefix || '-p' || n, :prefix || n || '@example.org',
            CASE WHEN n % 7 = 0 THEN 'O''Brien ' || n ELSE 'Reader' || n END,
            'UTC', 'active', '[]'{json_type}, '{{}}'{json_type}, :now, :now, :now, 0
        FROM seq
    """  # noqa: S608 - only a module constant is formatted in
    queue = """
        INSERT INTO deliveries (key, kind, subscriber_id, item_id, status, attempts, due_at,
            created_at, updated_at)
        SELECT :key || ':' || id, 'drip', id, :item, 'queued', 0, :now, :now, :now
        FROM subscribers WHERE public_id LIKE :prefix || '-p%'
    """
    stamp = bindparam("now", type_=UTCDateTime())
    with engine.begin() as conn:
        conn.execute(text(people).bindparams(stamp), {"last": count, "now": due, "prefix": prefix})
        conn.execute(
            text(queue).bindparams(stamp),
            {"item": item_id, "now": due, "key": key, "prefix": prefix},
        )


class RecordingMailer(SendGridMailer):
    """The real mailer; it also keeps every body it posted (for the ceiling run)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.bodies: list[bytes] = []

    def _post(self, body: bytes):  # type: ignore[no-untyped-def]
        self.bodies.append(body)
        return super()._post(body)


def run_project(app: App, batch_size: int) -> tuple[float, os.times_result, int, float | None]:
    """Wall seconds, CPU times of this process (its threads included), emails sent and,
    on PostgreSQL, the CPU seconds of its server backends (``/proc``: the server must run
    on this machine)."""
    server = CpuMeter(app.engine) if app.engine.dialect.name == "postgresql" else None
    before = os.times()
    started = time.perf_counter()
    _drain(app, batch_size, worker="worker")
    seconds = time.perf_counter() - started
    after = os.times()
    cpu = os.times_result((after.user - before.user, after.system - before.system, 0.0, 0.0, 0.0))
    mine = cpu.user + cpu.system
    server_cpu = None if server is None else server.spent() - mine
    return seconds, cpu, _check_sent(app), server_cpu


def _drain(app: App, batch_size: int, *, worker: str) -> None:
    while deliver_due(app, now=NOW, limit=batch_size, worker=worker).claimed:
        pass


def _check_sent(app: App) -> int:
    """Emails sent by the run (``--history`` rows left out); raises unless every row is
    ``sent``, each after one attempt."""
    with app.sessions() as session:
        others = session.execute(
            select(Delivery.status, func.count(), func.max(Delivery.attempts))
            .where(Delivery.key.not_like(f"{HISTORY_KEY}:%"))
            .group_by(Delivery.status)
        ).all()
    if any(status != "sent" or attempts != 1 for status, _, attempts in others):
        raise RuntimeError(f"not every email was sent once: {others}")
    return sum(count for _, count, _ in others)


def _worker(
    environ: Mapping[str, str],
    name: str,
    batch_size: int,
    ready: Any,
    start: Any,
    results: Any,
) -> None:
    """One worker process of ``--workers``: loads its app, waits for ``start``, drains the
    queue under its own name; puts (its end time, its CPU times, the bodies it posted)."""
    settings = load_settings(dict(environ), env_file=None)
    mailer = _mailer(settings.mail_backend, environ["NEWSLETTER_SENDGRID_API_URL"])
    app = App(settings, mailer=mailer)
    try:
        app.library  # noqa: B018 - load the content outside the timing
        ready.put(name)
        start.wait()
        before = os.times()
        _drain(app, batch_size, worker=name)
        after = os.times()
        bodies = mailer.bodies if isinstance(mailer, RecordingMailer) else []
        results.put(
            (time.perf_counter(), after.user - before.user, after.system - before.system, bodies)
        )
    finally:
        app.close()


def _mailer(backend: str, sink: str) -> Mailer | None:
    return (
        RecordingMailer(API_KEY, sink, concurrency=CONCURRENCY) if backend == "sendgrid" else None
    )


def run_workers(
    environ: Mapping[str, str], batch_size: int, workers: int
) -> tuple[float, os.times_result, list[bytes]]:
    """``workers`` processes on the queue from one start signal: wall seconds from the
    start to the last end, their CPU times together, the bodies they posted."""
    context = multiprocessing.get_context("spawn")
    ready, results, start = context.Queue(), context.Queue(), context.Event()
    processes = [
        context.Process(
            target=_worker,
            args=(environ, f"bench-{n}", batch_size, ready, start, results),
            daemon=True,  # a failed run never waits for the others at exit
        )
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            _get(ready, processes, timeout=120)
        started = time.perf_counter()
        start.set()
        ends = [_get(results, processes, timeout=600) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
    seconds = max(end for end, _, _, _ in ends) - started
    cpu = os.times_result((sum(e[1] for e in ends), sum(e[2] for e in ends), 0.0, 0.0, 0.0))
    return seconds, cpu, [body for e in ends for body in e[3]]


def _get(queue: Any, processes: list[Any], *, timeout: float) -> Any:
    """The next item of ``queue``; raises at once when a worker process has died (its
    traceback is on stderr), instead of waiting out ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return queue.get(timeout=0.5)
        except Empty:
            failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if failed:
                raise RuntimeError(f"a worker process failed (exit codes {failed})") from None
    raise RuntimeError(f"no word from the worker processes in {timeout:.0f} s")


def check_bodies(bodies: list[bytes], count: int) -> None:
    """Raises unless the posted bodies hold ``count`` emails, each delivery id once."""
    ids = [
        p["custom_args"]["delivery_id"]
        for body in bodies
        for p in json.loads(body)["personalizations"]
    ]
    if len(ids) != count or len(set(ids)) != count:
        raise RuntimeError(f"{len(ids)} emails posted, {len(set(ids))} distinct, not {count}")


def bare_client(url: str, bodies: list[bytes], threads: int) -> float:
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    with (
        httpx.Client(headers=headers, limits=limits, timeout=30) as client,
        ThreadPoolExecutor(threads) as pool,
    ):

        def post(body: bytes) -> None:
            answer = client.post(f"{url}/v3/mail/send", content=body)
            if answer.status_code != 202:
                raise RuntimeError(f"HTTP {answer.status_code}")

        started = time.perf_counter()
        list(pool.map(post, bodies))
        return time.perf_counter() - started


def write_files(folder: Path, datas: list[bytes]) -> float:
    folder.mkdir()
    started = time.perf_counter()
    for n, data in enumerate(datas):
        target = folder / f"{n:012d}.eml"
        temporary = target.with_suffix(".tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--backend", choices=("sendgrid", "outbox"), default="sendgrid")
    parser.add_argument("--item", default="tips/meet-your-ql")
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per claim")
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="ANALYZE after loading, as autovacuum would have (default: the fresh, "
        "unanalysed tables a large enqueue right before a send also gives)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes draining the queue together"
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="emails already sent to other subscribers (three days ago) in the ledger",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")

    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as folder:
        tmp = Path(folder)
        url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
        engine = fresh_engine(url)
        add_history(engine, args.history, args.item)
        populate(engine, args.count, args.item)
        if args.analyze:
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        engine.dispose()
        with sink_process() as sink:
            environ = {
                "NEWSLETTER_VAR_DIR": str(tmp / "var"),
                "NEWSLETTER_DATABASE_URL": url,
                "NEWSLETTER_SECRET_KEY": "bench-secret-key",
                "NEWSLETTER_BASE_URL": "https://news.example",
                "NEWSLETTER_OUTBOX_DIR": str(tmp / "outbox"),
                "NEWSLETTER_POSTAL_ADDRESS": "Backwise Ltd, 1 Test Street, 10115 Berlin",
                "NEWSLETTER_FROM_EMAIL": "tips@shop.example",
                "NEWSLETTER_FROM_NAME": "Backwise",
                "NEWSLETTER_CONTENT_DIR": str(ROOT / "content"),
                "NEWSLETTER_TEMPLATES_DIR": str(ROOT / "templates" / "emails"),
                "NEWSLETTER_BATCH_SIZE": str(args.batch_size),
                "NEWSLETTER_MAIL_BACKEND": args.backend,
                "NEWSLETTER_SENDGRID_API_KEY": API_KEY,
                "NEWSLETTER_SENDGRID_API_URL": sink,
            }
            settings = load_settings(environ, env_file=None)
            bodies: list[bytes] = []
            server_cpu: float | None = None
            if args.workers > 1:
                seconds, cpu, bodies = run_workers(environ, args.batch_size, args.workers)
                app = App(settings)
                try:
                    sent = _check_sent(app)
                finally:
                    app.close()
            else:
                mailer = _mailer(args.backend, sink)
                app = App(settings, mailer=mailer)
                try:
                    app.library  # noqa: B018 - load the content outside the timing
                    seconds, cpu, sent, server_cpu = run_project(app, args.batch_size)
                finally:
                    app.close()
                if isinstance(mailer, RecordingMailer):
                    bodies = mailer.bodies
            if args.backend == "sendgrid":
                check_bodies(bodies, args.count)
            print(
                f"{args.backend}, {args.count} emails of {args.item}, {args.batch_size} per "
                f"claim, {engine.dialect.name}{', analysed' if args.analyze else ''}, "
                f"{args.workers} worker process(es), {args.history} rows of history, "
                f"load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            total = cpu.user + cpu.system
            print(
                f"project  deliver_due end to end: {sent / seconds:10.0f} emails/s  "
                f"{seconds:7.2f} s  (CPU {total:.2f} s: {sent / total:.0f} emails per CPU-s; "
                "on a busy machine the wall time waits for a core)"
            )
            # The user time is the steadier figure: the system time is mostly the file
            # system's (outbox) or the socket's, and swings with the machine.
            print(
                f"CPU per email: {total / sent * 1e6:.0f} us "
                f"(user {cpu.user / sent * 1e6:.0f} us, system {cpu.system / sent * 1e6:.0f} us)"
            )
            if server_cpu is not None:
                print(f"PostgreSQL server CPU per email: {server_cpu / sent * 1e6:.0f} us")
            if args.backend == "sendgrid":
                ceiling = bare_client(sink, bodies, threads=CONCURRENCY)
                label = f"bare httpx client, same {len(bodies)} bodies"
            else:
                datas = [p.read_bytes() for p in sorted((tmp / "outbox").glob("*.eml"))]
                ceiling = write_files(tmp / "rewritten", datas)
                label = f"writing the same {len(datas)} files"
            print(f"ceiling  {label}: {sent / ceiling:10.0f} emails/s  {ceiling:7.2f} s")
            print(f"ratio    project / ceiling: {ceiling / seconds:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
