"""The body-size cap holds for a chunked body too (no Content-Length to check up front).

Served for real by uvicorn on loopback; httpx sends each body from a generator, so it goes
out with ``Transfer-Encoding: chunked``. Over the cap: 413 in the endpoint's own error shape,
and no row written anywhere.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.models import Base
from newsletter.settings import Settings
from newsletter.web.app import create_web_app
from newsletter.web.webhooks import MAX_BODY_BYTES as SENDGRID_MAX_BODY_BYTES
from tests.api_support import Clock, bearer
from tests.conftest import NOW
from tests.servers import free_port, serve_asgi

CAP = 2048
SOURCES_YAML = (
    "sources:\n  shop: {preset: generic, secret_env: SRC_CAP_SHOP, max_body_bytes: 1024}\n"
)


def chunks(
    size: int, *, prefix: bytes = b'{"email": "big@example.org", "pad": "'
) -> Iterator[bytes]:
    """A JSON body of about *size* bytes in 64 or more chunks (no Content-Length)."""
    step = max(256, size // 64)
    yield prefix
    sent = len(prefix)
    while sent < size:
        yield b"x" * step
        sent += step
    yield b'"}'


def _public_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.fixture
def served(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, App, str]]:
    """The whole web app on loopback, a write API key, a form source and SendGrid events."""
    from newsletter.api_keys import create_key

    sources = tmp_path / "sources.yaml"
    sources.write_text(SOURCES_YAML)
    monkeypatch.setenv("SRC_CAP_SHOP", "shop-secret")
    app = App(
        make_settings(
            max_body_bytes=str(CAP),
            sources_file=str(sources),
            sendgrid_webhook_public_key=_public_key(),
        )
    )
    app.migrate()
    _view, write = create_key(app, "shop", scope="write", now=NOW)
    try:
        with serve_asgi(create_web_app(app, clock=Clock(NOW)), free_port()) as url:
            yield url, app, write
    finally:
        app.close()


def rows(app: App) -> dict[str, int]:
    with app.sessions() as session:
        return {
            table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


ENDPOINTS = [
    pytest.param("/api/v1/subscribers", CAP, "api", id="api"),
    pytest.param("/subscribe", CAP, "form", id="form-webhook"),
    pytest.param("/subscribe/shop", 1024, "source", id="source-webhook"),
    pytest.param("/webhooks/sendgrid", SENDGRID_MAX_BODY_BYTES, "sendgrid", id="sendgrid-events"),
]


def _shape(kind: str, body: Any, limit: int) -> bool:
    message = f"the body is larger than {limit} bytes"
    if kind == "api":
        return bool(body == {"error": {"code": "too_large", "message": message}})
    return bool(message in json.dumps(body))


@pytest.mark.parametrize(("path", "limit", "kind"), ENDPOINTS)
def test_a_chunked_body_over_the_cap_is_413_and_writes_nothing(
    served: tuple[str, App, str], path: str, limit: int, kind: str
) -> None:
    url, app, write = served
    before = rows(app)
    headers = {**bearer(write), "Content-Type": "application/json"}
    with httpx.Client(timeout=30) as client:
        response = client.post(url + path, content=chunks(limit + 1024), headers=headers)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert _shape(kind, response.json(), limit), response.text
    assert rows(app) == before


def test_a_chunked_body_under_the_cap_is_read_and_parsed(served: tuple[str, App, str]) -> None:
    """The cap reads the body once; the API still parses the bytes it read."""
    url, _app, write = served
    body = iter(
        [
            b'{"email": "ann@example.org",',
            b' "first_name": "Ann", "confirmed": true,',
            b' "consent": {"source": "checkout"}}',
        ]
    )
    with httpx.Client(timeout=30) as client:
        response = client.post(
            url + "/api/v1/subscribers",
            content=body,
            headers={**bearer(write), "Content-Type": "application/json"},
        )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 201, response.text
    assert response.json()["subscriber"]["email"] == "ann@example.org"


def test_a_declared_length_over_the_cap_is_refused_before_reading(
    served: tuple[str, App, str],
) -> None:
    url, app, write = served
    before = rows(app)
    with httpx.Client(timeout=30) as client:
        response = client.post(
            url + "/api/v1/subscribers",
            content=b"x" * (CAP + 1),
            headers={**bearer(write), "Content-Type": "application/json"},
        )
    assert response.request.headers["content-length"] == str(CAP + 1)
    assert response.status_code == 413
    assert response.json() == {
        "error": {"code": "too_large", "message": f"the body is larger than {CAP} bytes"}
    }
    assert rows(app) == before
