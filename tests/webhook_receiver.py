"""A real webhook receiver on loopback for tests: records every request (headers, raw
body) and answers as told: 200, a status code, slowly, or not at all (stopped: the port
refuses connections). Keep-alive (HTTP/1.1), like a production receiver."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def payload(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if len(body) < length:  # the sender died mid-request (SIGKILL tests): not a delivery
            self.close_connection = True
            return
        behaviour = self.server.receiver.behaviour
        if behaviour.delay:
            time.sleep(behaviour.delay)
        self.server.receiver.record(Received(dict(self.headers.items()), body, time.time()))
        answer = b"ok" if behaviour.status < 300 else b"nope"
        try:
            self.send_response(behaviour.status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (a time-out test)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, receiver: Receiver) -> None:
        self.receiver = receiver
        super().__init__(("127.0.0.1", port), _Handler)


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    behaviour: Behaviour = field(default_factory=Behaviour)
    received: list[Received] = field(default_factory=list)
    _server: _Server | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/newsletter?source=test"

    def record(self, item: Received) -> None:
        with self._lock:
            self.received.append(item)

    def start(self) -> Receiver:
        self._server = _Server(self.port, self)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[str]:
        with self._lock:
            return [r.payload["id"] for r in self.received]
