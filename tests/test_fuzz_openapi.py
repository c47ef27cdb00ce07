"""Schema-driven fuzzing over /openapi.json: no input makes the service answer 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from newsletter.app import App
from newsletter.settings import load_settings
from newsletter.web.app import create_web_app
from tests.conftest import ROOT, base_environ

VECTOR = ROOT / "tests" / "data" / "sendgrid" / "sendgrid_signed_webhook_test_vector.json"


def _build() -> App:
    import tempfile

    from newsletter.db import make_engine, upgrade

    directory = Path(tempfile.mkdtemp(prefix="nl-fuzz-"))
    url = f"sqlite:///{directory / 'fuzz.db'}"
    upgrade(make_engine(url))
    environ = base_environ(directory, url)
    environ["NEWSLETTER_SUBSCRIBE_RATE_LIMIT"] = "100000/minute"
    vector = json.loads(VECTOR.read_text())
    environ["NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY"] = vector["public_key_b64_spki"]
    return App(load_settings(environ))


APP = _build()
schema = schemathesis.openapi.from_asgi("/openapi.json", create_web_app(APP))


@pytest.fixture(scope="module", autouse=True)
def _close_app() -> Iterator[None]:
    yield
    APP.close()


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_route_answers_5xx(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (response.status_code, response.text[:500])
