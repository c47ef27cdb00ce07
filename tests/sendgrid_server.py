"""A local SendGrid-compatible server for tests and benchmarks (loopback only).

``POST /v3/mail/send`` checks ``Authorization: Bearer ...``, validates the JSON body
against SendGrid's published schema (compiled once), answers ``202`` with a unique
``X-Message-Id`` and records what it got. Faults can be queued for the next N requests
or set as a standing mode: any status (400 with SendGrid-style ``errors``, 401, 403, 413,
429 with ``Retry-After``/``X-RateLimit-Reset``, 500), a delay before answering, or a
dropped connection after reading the request.

In a test::

    with SendGridServer() as server:
        server.inject(Fault(status=429, headers={"Retry-After": "7"}), times=1)
        mailer = SendGridMailer("SG.test", server.url)
        ...
        server.recorded().requests

From another process: ``python tests/sendgrid_server.py --port 0`` prints
``LISTENING http://127.0.0.1:<port>`` and serves until killed; it also answers
``GET /_recorded`` (JSON: counts and delivery ids), ``POST /_faults``
(JSON ``{"status": 429, "times": 3, "delay": 0, "drop": false, "headers": {...}}``,
``"times": null`` sets the standing mode) and ``POST /_reset``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import secrets
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed

# SendGrid's published schema, kept in the repo (see tests/data/sendgrid/README.md).
SCHEMA_PATH = Path(__file__).resolve().parent / "data/sendgrid/sendgrid_mail_send_schema.json"

ERROR_MESSAGES = {
    400: "Bad Request",
    401: "The provided authorization grant is invalid, expired, or revoked",
    403: "access forbidden",
    413: "content too large",
    429: "too many requests",
    500: "internal server error",
    503: "service unavailable",
}


# ``format: email`` as SendGrid enforces it: an ASCII address (the common JSON-schema
# email pattern, as ajv-formats has it). jsonschema's own "email" check only looks for an
# "@", which would let ``jürgen@bücher.example`` through where SendGrid answers 400.
EMAIL_FORMAT = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?",
    re.IGNORECASE,
)


def format_checker() -> jsonschema.FormatChecker:
    """Every format jsonschema knows, with ``email`` checked as SendGrid does."""
    checker = jsonschema.FormatChecker()

    @checker.checks("email")
    def is_email(instance: object) -> bool:
        return not isinstance(instance, str) or EMAIL_FORMAT.fullmatch(instance) is not None

    return checker


def load_validator() -> jsonschema.protocols.Validator:
    """SendGrid's request-body schema, compiled once, with format checks."""
    document = json.loads(SCHEMA_PATH.read_text())
    schema = document["requestBodySchema"]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema, format_checker=format_checker())


@dataclass(frozen=True)
class Fault:
    """How to answer one request instead of ``202``.

    ``status`` None answers normally (after ``delay``). ``drop`` closes the connection
    after reading the request, without an answer.
    """

    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None
    error_field: str | None = None


@dataclass
class Recorded:
    """What the server has seen so far (a snapshot)."""

    requests: int = 0  # every POST /v3/mail/send, whatever the answer
    accepted: int = 0  # answered 202
    connections: int = 0  # TCP connections opened
    statuses: Counter[int] = field(default_factory=Counter)
    dropped: int = 0
    invalid: int = 0  # schema-invalid bodies (answered 400)
    bodies: list[dict[str, Any]] = field(default_factory=list)  # accepted bodies (if kept)
    accepted_delivery_ids: list[str] = field(default_factory=list)
    received_delivery_ids: list[str] = field(default_factory=list)  # every parsed request
    message_ids: list[str] = field(default_factory=list)
    authorizations: set[str] = field(default_factory=set)

    @property
    def personalizations(self) -> int:
        return len(self.accepted_delivery_ids)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["statuses"] = {str(k): v for k, v in self.statuses.items()}
        data["authorizations"] = len(self.authorizations)
        del data["bodies"]
        return data


def _delivery_ids(body: Any) -> list[str]:
    ids: list[str] = []
    if isinstance(body, dict):
        for p in body.get("personalizations") or []:
            if isinstance(p, dict) and isinstance(p.get("custom_args"), dict):
                value = p["custom_args"].get("delivery_id")
                if value is not None:
                    ids.append(str(value))
    return ids


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.app.connection_opened()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the recorder is the log

    # ---- routes ------------------------------------------------------------------

    def do_POST(self) -> None:
        body = self._read_body()
        app = self.server.app
        if self.path == "/v3/mail/send":
            app.handle_send(self, body)
        elif self.path == "/_faults":
            spec = json.loads(body or b"{}")
            times = spec.pop("times", 1)
            app.inject(Fault(**spec), times=times)
            self.answer(200, {"ok": True})
        elif self.path == "/_reset":
            app.reset()
            self.answer(200, {"ok": True})
        else:
            self.answer(404, {"errors": [{"message": "not found", "field": None}]})

    def do_GET(self) -> None:
        if self.path == "/_recorded":
            self.answer(200, self.server.app.recorded().as_json())
        else:
            self.answer(404, {"errors": [{"message": "not found", "field": None}]})

    # ---- helpers -----------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(
        self, status: int, payload: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may have gone already
            self.connection.shutdown(socket.SHUT_RDWR)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: SendGridServer) -> None:
        self.app = app
        super().__init__(address, _Handler)


class SendGridServer:
    """The server; a context manager that serves on ``127.0.0.1`` in a thread."""

    def __init__(
        self,
        *,
        port: int = 0,
        api_key: str | None = None,
        keep_bodies: bool = True,
        validate: bool = True,
    ) -> None:
        self.api_key = api_key  # None: any Bearer token is accepted
        self.keep_bodies = keep_bodies
        self._validator = load_validator() if validate else None
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._mode: Fault | None = None
        self._recorded = Recorded()
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(6)
        self._httpd = _HTTPServer(("127.0.0.1", port), self)
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SendGridServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SendGridServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- control -----------------------------------------------------------------

    def inject(self, fault: Fault, *, times: int | None = 1) -> None:
        """Answer the next ``times`` requests with ``fault``; ``None``: every request."""
        with self._lock:
            if times is None:
                self._mode = fault
            else:
                self._faults.extend([fault] * times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._mode = None

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._mode = None
            self._recorded = Recorded()

    def recorded(self) -> Recorded:
        with self._lock:
            r = self._recorded
            return Recorded(
                requests=r.requests,
                accepted=r.accepted,
                connections=r.connections,
                statuses=Counter(r.statuses),
                dropped=r.dropped,
                invalid=r.invalid,
                bodies=list(r.bodies),
                accepted_delivery_ids=list(r.accepted_delivery_ids),
                received_delivery_ids=list(r.received_delivery_ids),
                message_ids=list(r.message_ids),
                authorizations=set(r.authorizations),
            )

    # ---- request handling (called from handler threads) ---------------------------

    def connection_opened(self) -> None:
        with self._lock:
            self._recorded.connections += 1

    def _next_fault(self) -> Fault | None:
        with self._lock:
            self._recorded.requests += 1
            if self._faults:
                return self._faults.popleft()
            return self._mode

    def handle_send(self, handler: _Handler, raw: bytes) -> None:
        fault = self._next_fault()
        auth = handler.headers.get("Authorization", "")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        ids = _delivery_ids(body)
        with self._lock:
            self._recorded.received_delivery_ids.extend(ids)
            self._recorded.authorizations.add(auth)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.drop:
            with self._lock:
                self._recorded.dropped += 1
            handler.drop()
            return
        if fault is not None and fault.status is not None:
            self._answer_error(
                handler, fault.status, fault.message, fault.error_field, fault.headers
            )
            return
        if not auth.startswith("Bearer ") or (
            self.api_key is not None and auth != f"Bearer {self.api_key}"
        ):
            self._answer_error(handler, 401, None, None, {})
            return
        problem = self._problem(body)
        if problem is not None:
            with self._lock:
                self._recorded.invalid += 1
            self._answer_error(handler, 400, problem[0], problem[1], {})
            return
        message_id = f"{self._prefix}.{next(self._ids)}.filter0001"
        with self._lock:
            r = self._recorded
            r.accepted += 1
            r.statuses[202] += 1
            r.accepted_delivery_ids.extend(ids)
            r.message_ids.append(message_id)
            if self.keep_bodies:
                r.bodies.append(body)
        handler.answer(202, None, {"X-Message-Id": message_id})

    def _problem(self, body: Any) -> tuple[str, str | None] | None:
        if body is None:
            return ("Bad Request: the request body is not valid JSON", None)
        if self._validator is None:
            return None
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(body))
        if error is None:
            return None
        where = ".".join(str(p) for p in error.absolute_path) or None
        return (error.message, where)

    def _answer_error(
        self,
        handler: _Handler,
        status: int,
        message: str | None,
        field_name: str | None,
        headers: Mapping[str, str],
    ) -> None:
        with self._lock:
            self._recorded.statuses[status] += 1
        text = message or ERROR_MESSAGES.get(status, "error")
        handler.answer(status, {"errors": [{"message": text, "field": field_name}]}, headers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="accept only this key")
    parser.add_argument("--no-bodies", action="store_true", help="do not keep bodies")
    parser.add_argument("--no-validate", action="store_true", help="skip schema checks")
    args = parser.parse_args(argv)
    server = SendGridServer(
        port=args.port,
        api_key=args.api_key,
        keep_bodies=not args.no_bodies,
        validate=not args.no_validate,
    )
    print(f"LISTENING {server.url}", flush=True)
    try:
        server._httpd.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
