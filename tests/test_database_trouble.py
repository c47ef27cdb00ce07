"""Database trouble is a 503 with ``Retry-After``, never a 500 or a dropped connection.

A read-only database (PostgreSQL with ``default_transaction_read_only``, as on a standby
after a fail-over or for a read-only role; a SQLite file opened ``mode=ro``) refuses every
write: ``/subscribe``, ``/confirm`` and ``/unsubscribe`` answer 503 and ``/healthz`` says
the database cannot be written. Errors in the confirmation sender, which runs after the
subscribe answer was sent, never reach the ASGI server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from newsletter.app import App
from newsletter.db_health import database_writable
from newsletter.models import Delivery, Subscriber
from newsletter.settings import Settings
from newsletter.tokens import make_unsubscribe_token
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.factories import add_subscriber
from tests.servers import free_port
from tests.test_web_subscribe import Clock, counts


def read_only_url(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        return f"sqlite:///file:{path}?mode=ro&uri=true"
    url = make_url(db_url)
    options = " ".join(
        filter(None, [url.query.get("options"), "-c default_transaction_read_only=on"])
    )
    return url.update_query_dict({"options": options}).render_as_string(hide_password=False)


@pytest.fixture
def apps(make_settings: Callable[..., Settings], db_url: str) -> Iterator[tuple[App, App]]:
    """(writable app, read-only app) over the same migrated database."""
    writable = App(make_settings())
    with writable.sessions.begin() as session:  # an existing subscriber to unsubscribe
        add_subscriber(session, "member@example.org")
    read_only = App(make_settings(database_url=read_only_url(db_url)))
    yield writable, read_only
    read_only.close()
    writable.close()


def test_read_only_database_is_detected_by_the_cheap_write_probe(apps: tuple[App, App]) -> None:
    writable, read_only = apps
    assert database_writable(writable.sessions) is None
    problem = database_writable(read_only.sessions)
    assert problem is not None
    assert "read" in problem.lower()  # "read-only transaction" / "readonly database"


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_subscribe_on_a_read_only_database_is_503_with_retry_after(
    apps: tuple[App, App], accept: str
) -> None:
    writable, read_only = apps
    client = TestClient(create_web_app(read_only, clock=Clock(NOW)))
    response = client.post(
        "/subscribe",
        content=b"email=new%40example.org",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": accept},
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert "briefly unavailable" in response.text
    assert counts(writable) == (1, 0, 0)  # only the subscriber added by the fixture


def test_unsubscribe_on_a_read_only_database_is_503_and_changes_nothing(
    apps: tuple[App, App],
) -> None:
    writable, read_only = apps
    with writable.sessions() as session:
        public_id = session.scalars(select(Subscriber.public_id)).one()
    token = make_unsubscribe_token(public_id, keys=writable.settings.secret_keys)
    client = TestClient(create_web_app(read_only, clock=Clock(NOW)))
    response = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    with writable.sessions() as session:
        assert session.scalars(select(Subscriber.status)).one() == "active"


def test_healthz_is_down_while_the_database_cannot_be_written(apps: tuple[App, App]) -> None:
    writable, read_only = apps
    healthy = TestClient(create_web_app(writable, clock=Clock(NOW))).get("/healthz")
    assert healthy.status_code == 200
    assert healthy.json()["database"] == "ok"
    response = TestClient(create_web_app(read_only, clock=Clock(NOW))).get("/healthz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    body = response.json()
    assert (body["status"], body["database"]) == ("down", "read-only")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_database_error_in_the_confirmation_sender_never_reaches_the_asgi_server(
    make_settings: Callable[..., Settings],
) -> None:
    """The subscription commits, then claiming its confirmation fails in the database.
    The answer (202) arrives, the subscriber is durable, uvicorn logs no exception and
    the kept-alive connection serves the next request; the row stays queued."""
    app = App(make_settings())
    failing = {"on": True}

    def refuse_claims(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        claim = statement.lstrip().upper().startswith("UPDATE DELIVERIES")
        if failing["on"] and claim and "WHERE 1 = 0" not in statement:  # not the probe
            raise OperationalError(statement, {}, Exception("could not write: disk is full"))

    event.listen(app.engine, "before_cursor_execute", refuse_claims)
    records = _Records()
    for name in ("uvicorn.error", "newsletter.web.app", "newsletter.confirmations"):
        logging.getLogger(name).addHandler(records)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_web_app(app, clock=Clock(NOW)),
            host="127.0.0.1",
            port=port,
            log_level="info",
            lifespan="off",
            log_config=None,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        connections: list[str] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            first = client.post("/subscribe", json={"email": "durable@example.org"})
            assert first.status_code == 202
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                "confirmation delivery failed" in r.getMessage() for r in records.records
            ):
                time.sleep(0.05)
            second = client.get(
                "/healthz",
                extensions={"trace": lambda name, info: connections.append(name)},
            )
            assert second.status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for name in ("uvicorn.error", "newsletter.web.app", "newsletter.confirmations"):
            logging.getLogger(name).removeHandler(records)
    messages = [r.getMessage() for r in records.records]
    assert any("confirmation delivery failed" in m for m in messages), messages
    assert not any("Exception in ASGI application" in m for m in messages), messages
    assert "connection.connect_tcp.started" not in connections  # the same connection
    with app.sessions() as session:
        assert session.scalars(select(Subscriber.email)).all() == ["durable@example.org"]
        assert session.scalars(select(Delivery.status)).all() == ["queued"]
    app.close()
