"""Schema-driven fuzzing of /api/v1/* with a valid write key: no input makes it answer 5xx."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from newsletter.api_keys import create_key
from newsletter.app import App
from newsletter.db import make_engine, transaction, upgrade
from newsletter.settings import load_settings
from newsletter.web.app import create_web_app
from tests.conftest import base_environ
from tests.factories import add_subscriber
from tests.mailers import RecordingMailer


def _build() -> tuple[App, str]:
    directory = Path(tempfile.mkdtemp(prefix="nl-api-fuzz-"))
    url = f"sqlite:///{directory / 'fuzz.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    environ = base_environ(directory, url)
    environ["NEWSLETTER_API_RATE_LIMIT"] = "1000000/minute"
    app = App(load_settings(environ), mailer=RecordingMailer())
    _view, secret = create_key(app, "fuzz", scope="write", now=datetime.now(UTC))
    with transaction(app.sessions) as session:
        add_subscriber(session, "user@example.com", attributes={"plan": "pro"})
    return app, secret


APP, KEY = _build()
schema = schemathesis.openapi.from_asgi("/openapi.json", create_web_app(APP)).include(
    path_regex="^/api/v1/"
)


@pytest.fixture(scope="module", autouse=True)
def _close_app() -> Iterator[None]:
    yield
    APP.close()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_api_route_answers_5xx(case: schemathesis.Case) -> None:
    response = case.call(headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body["error"]) == {"code", "message"}, body
