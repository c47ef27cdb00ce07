"""The local SendGrid-compatible server answers like SendGrid and injects faults."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sendgrid_server import Fault, SendGridServer, load_validator

VALID: dict[str, Any] = {
    "from": {"email": "tips@shop.example", "name": "Shop"},
    "subject": "Hello",
    "content": [{"type": "text/plain", "value": "Hi"}, {"type": "text/html", "value": "<p>Hi"}],
    "personalizations": [
        {"to": [{"email": "a@example.com"}], "custom_args": {"delivery_id": "1"}},
        {"to": [{"email": "b@example.com"}], "custom_args": {"delivery_id": "2"}},
    ],
}
AUTH = {"Authorization": "Bearer SG.test"}


@pytest.fixture
def server() -> Iterator[SendGridServer]:
    with SendGridServer(api_key="SG.test") as running:
        yield running


@pytest.fixture
def client(server: SendGridServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=5) as http:
        yield http


def test_valid_body_is_accepted_with_unique_message_ids(
    server: SendGridServer, client: httpx.Client
) -> None:
    first = client.post("/v3/mail/send", json=VALID)
    second = client.post("/v3/mail/send", json=VALID)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.headers["X-Message-Id"] != second.headers["X-Message-Id"]
    recorded = server.recorded()
    assert recorded.requests == 2
    assert recorded.accepted_delivery_ids == ["1", "2", "1", "2"]
    assert recorded.bodies == [VALID, VALID]
    assert recorded.connections == 1  # keep-alive


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({**VALID, "personalizations": []} | {"from": {}}, "from", id="from-no-email"),
        pytest.param({k: v for k, v in VALID.items() if k != "from"}, None, id="missing-from"),
        pytest.param({**VALID, "custom_args": {"a": "b"}}, "custom_args", id="message-args"),
        pytest.param({**VALID, "subject": ""}, "subject", id="empty-subject"),
        pytest.param(
            {**VALID, "personalizations": [{"to": [{"email": "x"}]}]},
            "personalizations.0.to.0.email",
            id="bad-email",
        ),
        pytest.param(
            {**VALID, "personalizations": [{"to": [{"email": "a@b.c"}]}] * 1001},
            "personalizations",
            id="too-many-personalizations",
        ),
    ],
)
def test_schema_invalid_body_gets_400_with_the_reason(
    server: SendGridServer, client: httpx.Client, body: dict[str, Any], field: str | None
) -> None:
    answer = client.post("/v3/mail/send", json=body)
    assert answer.status_code == 400
    error = answer.json()["errors"][0]
    assert error["message"]
    assert error["field"] == field
    assert server.recorded().invalid == 1
    assert server.recorded().accepted == 0


def test_not_json_gets_400(client: httpx.Client) -> None:
    answer = client.post("/v3/mail/send", content=b"{not json")
    assert answer.status_code == 400
    assert "JSON" in answer.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "headers",
    [pytest.param({}, id="no-auth"), pytest.param({"Authorization": "Bearer SG.x"}, id="wrong")],
)
def test_bad_key_gets_401(server: SendGridServer, headers: dict[str, str]) -> None:
    answer = httpx.post(f"{server.url}/v3/mail/send", json=VALID, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["message"]


@pytest.mark.parametrize("status", [400, 401, 403, 413, 429, 500, 503])
def test_injected_status_applies_to_next_n_requests(
    server: SendGridServer, client: httpx.Client, status: int
) -> None:
    server.inject(Fault(status=status, headers={"Retry-After": "3"}), times=2)
    answers = [client.post("/v3/mail/send", json=VALID) for _ in range(3)]
    assert [a.status_code for a in answers] == [status, status, 202]
    assert answers[0].headers["Retry-After"] == "3"
    assert answers[0].json()["errors"][0]["message"]
    assert server.recorded().statuses == {status: 2, 202: 1}


def test_standing_mode_until_cleared(server: SendGridServer, client: httpx.Client) -> None:
    server.inject(Fault(status=500), times=None)
    assert [client.post("/v3/mail/send", json=VALID).status_code for _ in range(3)] == [500] * 3
    server.clear_faults()
    assert client.post("/v3/mail/send", json=VALID).status_code == 202


def test_drop_closes_the_connection_after_reading(
    server: SendGridServer, client: httpx.Client
) -> None:
    server.inject(Fault(drop=True))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/v3/mail/send", json=VALID)
    recorded = server.recorded()
    assert (recorded.requests, recorded.dropped, recorded.accepted) == (1, 1, 0)
    assert recorded.received_delivery_ids == ["1", "2"]


def test_delay_answers_slowly(server: SendGridServer) -> None:
    server.inject(Fault(delay=0.5))
    with (
        httpx.Client(base_url=server.url, headers=AUTH, timeout=0.1) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post("/v3/mail/send", json=VALID)


def test_validator_accepts_what_the_sendgrid_helpers_build() -> None:
    from sendgrid.helpers.mail import Mail

    body = Mail("tips@shop.example", "a@example.com", "Hi", "text", "<p>html").get()
    assert list(load_validator().iter_errors(body)) == []


def test_standalone_process_reports_over_http(tmp_path: Path) -> None:
    """``python tests/sendgrid_server.py --port 0`` serves and reports from another process."""
    script = Path(__file__).with_name("sendgrid_server.py")
    process = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--api-key", "SG.test"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("LISTENING http://127.0.0.1:")
        url = line.split()[1]
        with httpx.Client(base_url=url, headers=AUTH, timeout=5) as http:
            http.post("/_faults", json={"status": 429, "times": 1, "headers": {"Retry-After": "1"}})
            assert http.post("/v3/mail/send", json=VALID).status_code == 429
            assert http.post("/v3/mail/send", json=VALID).status_code == 202
            report = http.get("/_recorded").json()
            assert report["requests"] == 2
            assert report["accepted_delivery_ids"] == ["1", "2"]
            assert report["statuses"] == {"429": 1, "202": 1}
            assert report["connections"] == 1
            http.post("/_reset")
            assert http.get("/_recorded").json()["requests"] == 0
        json.dumps(report)
    finally:
        process.terminate()
        process.wait(timeout=10)
