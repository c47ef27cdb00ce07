"""A small keep-alive HTTP/1.1 load generator: fixed concurrency, prebuilt requests.

Raw asyncio streams, no HTTP library: the client costs a few tens of microseconds per
request, so a ceiling measured with it is the server's, not the client's. Run it in its own
process (the benchmark script), with the server in another.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: list[bytes] = field(default_factory=list)  # the first few non-2xx answers

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: int) -> float:
        """Latency at the ``q``-th percentile, in milliseconds."""
        ordered = sorted(self.latencies)
        if len(ordered) < 2:
            return (ordered or [0.0])[0] * 1000
        return statistics.quantiles(ordered, n=100, method="inclusive")[q - 1] * 1000


def request_bytes(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        parts.append(await reader.readexactly(size + 2))
        if size == 0:
            return status, b"".join(parts)


async def _hammer(host: str, port: int, requests: list[bytes], concurrency: int) -> LoadResult:
    result = LoadResult(0.0)
    pending = iter(requests)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for raw in pending:
                started = time.perf_counter()
                writer.write(raw)
                status, body = await _read_response(reader)
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] += 1
                if status >= 300 and len(result.bodies) < 5:
                    result.bodies.append(body[:300])
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def hammer(host: str, port: int, requests: list[bytes], concurrency: int) -> LoadResult:
    """Send every request over ``concurrency`` keep-alive connections; time each answer."""
    return asyncio.run(_hammer(host, port, requests, concurrency))
