"""What the benchmarks share: a freshly migrated database to measure against."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from newsletter.db import make_engine, upgrade

ROOT = Path(__file__).resolve().parent.parent


def fresh_engine(url: str) -> Engine:
    """A migrated engine for *url*; a PostgreSQL database is wiped first (schema ``public``
    dropped and recreated). The caller disposes of it."""
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    return engine


DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/nl_drip"


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--backend sqlite|postgresql|both`` and ``--postgres-url`` (its schema is DROPPED)."""
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)


def backend_urls(args: argparse.Namespace, tmp: str) -> Sequence[str]:
    """The database URLs ``--backend`` names: a SQLite file in *tmp*, the PostgreSQL URL."""
    urls = []
    if args.backend in ("sqlite", "both"):
        urls.append(f"sqlite:///{tmp}/bench.db")
    if args.backend in ("postgresql", "both"):
        urls.append(args.postgres_url)
    return urls


def insert_readers(conn: Connection, numbers: str, size: int, now: object) -> None:
    """Subscribers ``1..size`` (ids from the *numbers* subquery), active, one zone."""
    conn.execute(
        text(
            "INSERT INTO subscribers (id, public_id, email, first_name, timezone, status, "  # noqa: S608 - constant SQL
            "tags, attributes, created_at, updated_at, soft_bounces) "
            f"SELECT n, 'p' || n, 'r' || n || '@example.org', 'Reader', 'Europe/Berlin', "
            f"'active', '[]', '{{}}', :now, :now, 0 FROM ({numbers}) AS numbers"
        ),
        {"size": size, "now": now},
    )


@contextmanager
def running_server(command: list[str], environ: dict[str, str], port: int) -> Iterator[Server]:
    """Start a server process listening on 127.0.0.1:``port``; stop it on exit."""
    log = open(Path(environ.get("NEWSLETTER_VAR_DIR", "/tmp")).parent / "server.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=log, stderr=log)
    try:
        _wait_for_port(port, process)
        yield Server(process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@dataclass
class Server:
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (and its threads) so far."""
        return _cpu_seconds(self.process.pid)

    def children_cpu_seconds(self) -> float:
        """The same for the processes the server started (still running), recursively."""
        return sum(_cpu_seconds(pid) + _children_cpu(pid) for pid in _children(self.process.pid))


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it ended meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _children_cpu(pid: int) -> float:
    return sum(_cpu_seconds(child) + _children_cpu(child) for child in _children(pid))


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine_load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
