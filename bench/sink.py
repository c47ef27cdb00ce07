"""A minimal keep-alive HTTP sink for dispatch benchmarks (bench-only, loopback).

    .venv/bin/python bench/sink.py [--port 0]

Accepts ``POST /v3/mail/send`` (any path, in fact), reads the body by ``Content-Length``,
counts requests and personalizations-free bytes, answers ``202`` with an ``X-Message-Id``.
No validation, no JSON parsing: it is the ceiling a client can reach, not a test server.
``GET /_count`` answers the request count and byte count as ``<requests> <bytes>``.
Prints ``LISTENING http://127.0.0.1:<port>`` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

_ACCEPTED = (
    b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nX-Message-Id: sink-%d\r\n"
    b"Connection: keep-alive\r\n\r\n"
)


class _Counter:
    requests = 0
    bytes = 0


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if head.startswith(b"GET /_count"):
                text = f"{_Counter.requests} {_Counter.bytes}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
            else:
                _Counter.requests += 1
                _Counter.bytes += length
                writer.write(_ACCEPTED % _Counter.requests)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def _main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port, limit=1 << 20)
    bound = server.sockets[0].getsockname()[1]
    print(f"LISTENING http://127.0.0.1:{bound}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
