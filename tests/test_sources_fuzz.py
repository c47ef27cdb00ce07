"""Fuzz ``POST /subscribe/{source}`` for every preset: whatever arrives, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.app import App
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.source_senders import encode, sample, signature_headers

PRESETS = [
    "webflow",
    "tally",
    "typeform",
    "formspree",
    "framer",
    "jotform",
    "shopify",
    "woocommerce",
    "stripe",
    "generic",
]
SECRET = "fuzz-secret-0123456789abcdef0123456789"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "a@example.com",
            "FORM_RESPONSE",
            "form_submission",
            "opt_in",
            "subscribed",
            "checkout.session.completed",
            "form_response",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "email",
                    "Email",
                    "data",
                    "payload",
                    "fields",
                    "type",
                    "eventType",
                    "triggerType",
                    "event_type",
                    "answers",
                    "object",
                    "consent",
                    "promotions",
                    "billing",
                    "email_marketing_consent",
                    "state",
                    "submission",
                    "rawRequest",
                    "value",
                    "label",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from newsletter.db import make_engine, upgrade
    from newsletter.settings import load_settings
    from tests.conftest import base_environ

    tmp = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{tmp / 'fuzz.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    path = tmp / "sources.yaml"
    path.write_text(
        "sources:\n"
        + "".join(
            f"  {p}: {{preset: {p}, secret_env: FUZZ_SECRET, rate_limit: 100000/minute"
            + (
                ", opt_in: single_if_consent, consent_text: ok"
                if p in ("shopify", "stripe")
                else ""
            )
            + "}\n"
            for p in PRESETS
        )
    )
    environ = base_environ(tmp, url) | {"NEWSLETTER_SOURCES_FILE": str(path)}
    application = App(load_settings(environ))
    import os

    os.environ["FUZZ_SECRET"] = SECRET
    try:
        yield TestClient(create_web_app(application, clock=lambda: NOW))
    finally:
        del os.environ["FUZZ_SECRET"]
        application.close()


@pytest.mark.parametrize("preset", PRESETS)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=json_values,
    raw=st.binary(max_size=200),
    use_raw=st.booleans(),
    signed=st.booleans(),
    topic=st.sampled_from([None, "customers/create", "orders/create", "order.created", "x"]),
    content_type=st.sampled_from(
        [
            "application/json",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "text/plain",
        ]
    ),
)
def test_no_input_makes_a_source_answer_5xx(
    fuzz_client: TestClient,
    preset: str,
    payload: Any,
    raw: bytes,
    use_raw: bool,
    signed: bool,
    topic: str | None,
    content_type: str,
) -> None:
    if use_raw:
        body = raw
    elif preset == "jotform" and isinstance(payload, dict):
        body, content_type = encode("jotform", {str(k): json.dumps(v) for k, v in payload.items()})
    else:
        body = json.dumps(payload).encode()
    kind = preset
    headers, query = signature_headers(kind, body, SECRET, NOW, topic=topic) if signed else ({}, {})
    response = fuzz_client.post(
        f"/subscribe/{preset}",
        content=body,
        params=query,
        headers={"Content-Type": content_type, **headers},
    )
    assert response.status_code < 500, response.text


@pytest.mark.parametrize("preset", PRESETS)
def test_the_documented_sample_passes_through_the_fuzz_app(
    fuzz_client: TestClient, preset: str
) -> None:
    """The fuzz app is wired right: a signed sample is accepted, so the fuzz reaches the core."""
    body, content_type = encode(preset, sample(preset))
    headers, query = signature_headers(preset, body, SECRET, NOW)
    response = fuzz_client.post(
        f"/subscribe/{preset}",
        content=body,
        params=query,
        headers={"Content-Type": content_type, **headers},
    )
    assert response.status_code in (200, 202), response.text
