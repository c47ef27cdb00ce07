"""Subscribe-webhook throughput: POST /subscribe against a bare ASGI sink (the ceiling).

    .venv/bin/python bench/bench_subscribe.py [--count 2000] [--concurrency 8] [--database URL]

Both servers run under the same uvicorn, on loopback, hit by the same keep-alive httpx
client with the same JSON bodies. The sink answers 202 without parsing; the real route
validates, writes the subscriber, the consent record and the confirmation ledger row, and
delivers the confirmation email to the outbox in a background task. The ratio is
"real requests/s divided by sink requests/s". Default database: a fresh SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.app import App  # noqa: E402
from newsletter.db import make_engine, upgrade  # noqa: E402
from newsletter.settings import load_settings  # noqa: E402
from newsletter.web.app import create_web_app  # noqa: E402
from tests.conftest import base_environ  # noqa: E402
from tests.servers import free_port, serve_asgi  # noqa: E402


async def sink(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ceiling: read the body, answer 202, nothing else."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 202,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"status":"accepted"}'})


async def hammer(base: str, count: int, concurrency: int, tag: str) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(
                    "/subscribe", json={"email": f"{tag}{i}@example.org", "first_name": "B"}
                )
                latencies.append(time.perf_counter() - started)
                if response.status_code != 202:
                    raise RuntimeError(f"{response.status_code}: {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return count / elapsed, latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", default="")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="nl-bench-subscribe-"))
    url = args.database or f"sqlite:///{directory / 'bench.db'}"
    upgrade(make_engine(url))
    environ = base_environ(directory, url)
    environ["NEWSLETTER_SUBSCRIBE_RATE_LIMIT"] = "10000000/minute"
    app = App(load_settings(environ))
    with serve_asgi(sink, free_port()) as base:
        ceiling, sink_lat = asyncio.run(hammer(base, args.count, args.concurrency, "sink"))
    with serve_asgi(create_web_app(app), free_port()) as base:
        real, real_lat = asyncio.run(hammer(base, args.count, args.concurrency, "real"))
    outbox = len(list(app.settings.effective_outbox_dir.glob("*.eml")))
    app.close()
    print(f"database: {url.split(':')[0]}, {args.count} requests, concurrency {args.concurrency}")
    print(f"ceiling (bare ASGI sink): {ceiling:8.0f} req/s   p99 {p99(sink_lat):6.1f} ms")
    print(f"POST /subscribe:          {real:8.0f} req/s   p99 {p99(real_lat):6.1f} ms")
    print(f"ratio: {real / ceiling:.3f}   confirmation emails written: {outbox}")


if __name__ == "__main__":
    main()
