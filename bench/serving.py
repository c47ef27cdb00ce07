"""Run a ceiling app under exactly the uvicorn set-up ``newsletter serve`` uses.

    python -m bench.serving hello|verify|verify-parse --port PORT

``hello`` answers 202 to anything (the subscribe ceiling); ``verify`` checks the SendGrid
signature and answers 200; ``verify-parse`` also parses the batch (``parse_batch``) and
answers its counts. Both SendGrid apps read NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY.
The project itself is measured through the real ``newsletter serve``.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.concurrency import run_in_threadpool

from newsletter.cli.support import bind_port
from newsletter.client_ip import UVICORN_PROXY_HEADERS

JSON = [(b"content-type", b"application/json")]


async def _body(receive: Any) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON})
    await send({"type": "http.response.body", "body": body})


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The subscribe ceiling: read the body, answer 202."""
    if scope["type"] != "http":
        return
    await _body(receive)
    await _answer(send, 202, b'{"status":"accepted"}')


def sendgrid_app(*, parse: bool) -> Any:
    from newsletter.events.parsing import parse_batch
    from newsletter.events.signature import (
        SIGNATURE_HEADER,
        TIMESTAMP_HEADER,
        SignatureError,
        WebhookVerifier,
    )

    verifier = WebhookVerifier(os.environ["NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY"])
    signature_header = SIGNATURE_HEADER.lower().encode()
    timestamp_header = TIMESTAMP_HEADER.lower().encode()

    def handle(body: bytes, signature: str | None, timestamp: str | None) -> bytes:
        verifier.verify(body, signature=signature, timestamp=timestamp, now=datetime.now(UTC))
        if not parse:
            return b'{"status":"ok"}'
        batch = parse_batch(body)
        return json.dumps({"status": "ok", "received": len(batch.events)}).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await _body(receive)
        if scope["path"] == "/healthz":
            await _answer(send, 200, b'{"status":"ok"}')
            return
        headers = dict(scope["headers"])
        signature = headers.get(signature_header, b"").decode("latin-1") or None
        timestamp = headers.get(timestamp_header, b"").decode("latin-1") or None
        try:
            answer = await run_in_threadpool(handle, body, signature, timestamp)
        except SignatureError as exc:
            await _answer(send, exc.status, b"{}")
            return
        await _answer(send, 200, answer)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app", choices=["hello", "verify", "verify-parse"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = hello if args.app == "hello" else sendgrid_app(parse=args.app == "verify-parse")
    # The same configuration as ``newsletter serve`` (newsletter/cli/__init__.py).
    config = uvicorn.Config(
        app, log_level="warning", log_config=None, proxy_headers=UVICORN_PROXY_HEADERS
    )
    sock = bind_port("127.0.0.1", args.port)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
