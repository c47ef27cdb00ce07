"""POST /webhooks/sendgrid: the official test vector verifies; every tampering is refused.

Also home of ``Signer`` (signs bodies the way SendGrid does) and the ``webhook`` fixture
that the other webhook and event tests import.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.errors import ConfigurationError
from newsletter.events.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER
from newsletter.models import EventInbox, ProviderEvent, Suppression
from newsletter.settings import Settings
from newsletter.web.app import create_web_app
from tests.conftest import NOW

# The official vector: sendgrid/sendgrid-python test/unit/test_eventwebhook.py @ 76788e70
# (also /work/shared/sendgrid/sendgrid_signed_webhook_test_vector.json).
VECTOR = {
    "public_key_b64_spki": (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3G"
        "Rqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
    ),
    "signature_b64_der": (
        "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M"
        "15TluLtEZtM="
    ),
    "timestamp_header": "1600112502",
    "raw_body": (
        '[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address","sg_eve'
        'nt_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA","sg_message_id":"LR'
        'zXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0","smtp-'
        'id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112'
        "492}]\r\n"
    ),
}
VECTOR_AT = datetime.fromtimestamp(int(VECTOR["timestamp_header"]), UTC)
WEBHOOK = "/webhooks/sendgrid"


class Signer:
    """An EC P-256 key pair that signs like SendGrid: ECDSA SHA-256 over timestamp + body."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")

    def sign(self, body: bytes, timestamp: str) -> str:
        signature = self._key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode("ascii")

    def headers(self, body: bytes, at: datetime) -> dict[str, str]:
        timestamp = str(int(at.timestamp()))
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: self.sign(body, timestamp),
            TIMESTAMP_HEADER: timestamp,
        }


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Webhook:
    """A running web app with a configured key, and helpers to post signed batches."""

    client: TestClient
    app: App
    signer: Signer
    clock: Clock

    def post(self, events: list[dict[str, Any]], *, at: datetime | None = None) -> Any:
        body = json.dumps(events).encode()
        at = at or self.clock.now
        return self.client.post(WEBHOOK, content=body, headers=self.signer.headers(body, at))

    def reports(self) -> list[dict[str, int] | None]:
        """The counts the drain recorded for each accepted body, oldest first."""
        with self.app.sessions() as session:
            return list(session.scalars(select(EventInbox.report).order_by(EventInbox.id)))

    def count(self, model: type[Any] = ProviderEvent) -> int:
        with self.app.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def make_webhook(
    make_settings: Callable[..., Settings],
) -> Iterator[Callable[..., Webhook]]:
    apps: list[App] = []

    def make(public_key: str | None = None, now: datetime = NOW, **overrides: str) -> Webhook:
        signer = Signer()
        key = signer.public_key if public_key is None else public_key
        app = App(make_settings(sendgrid_webhook_public_key=key, **overrides))
        apps.append(app)
        clock = Clock(now)
        client = TestClient(create_web_app(app, clock=clock))
        return Webhook(client=client, app=app, signer=signer, clock=clock)

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def webhook(make_webhook: Callable[..., Webhook]) -> Webhook:
    return make_webhook()


def _vector_headers(**changes: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: VECTOR["signature_b64_der"],
        TIMESTAMP_HEADER: VECTOR["timestamp_header"],
    }
    headers.update(changes)
    return {k: v for k, v in headers.items() if v is not None}


def test_official_vector_verifies_and_is_stored(make_webhook: Callable[..., Webhook]) -> None:
    """SendGrid's own signed sample passes the real route and its dropped event is acted on."""
    hook = make_webhook(VECTOR["public_key_b64_spki"], now=VECTOR_AT + timedelta(seconds=30))
    response = hook.client.post(
        WEBHOOK, content=VECTOR["raw_body"].encode(), headers=_vector_headers()
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted"}
    # Applied by the drain before the request's ASGI cycle ended; its counts are recorded.
    assert hook.reports() == [
        {
            "received": 1,
            "stored": 1,
            "duplicates": 0,
            "ignored": 0,
            "reconciled": 0,
            "suppressed": 1,
        }
    ]
    with hook.app.sessions() as session:
        stored = session.scalars(select(ProviderEvent)).one()
        reasons = list(session.scalars(select(Suppression.reason)))
    assert stored.event == "dropped"
    assert stored.sg_event_id == "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"
    assert stored.occurred_at == datetime.fromtimestamp(1600112492, UTC)
    assert "email" not in stored.payload
    assert reasons == ["bounced"]  # "Bounced Address": suppressed by hash, no subscriber row


def _other_key() -> str:
    return Signer().public_key


def _reencoded() -> str:
    return json.dumps(json.loads(VECTOR["raw_body"]))


TAMPERED: list[Any] = [
    pytest.param(VECTOR["raw_body"].removesuffix("\r\n"), {}, None, 403, id="crlf-removed"),
    pytest.param(_reencoded(), {}, None, 403, id="json-re-encoded"),
    pytest.param(VECTOR["raw_body"], {}, "other-key", 403, id="other-key"),
    pytest.param(
        VECTOR["raw_body"],
        {TIMESTAMP_HEADER: str(int(VECTOR["timestamp_header"]) + 1)},
        None,
        403,
        id="other-timestamp",
    ),
    pytest.param(VECTOR["raw_body"], {SIGNATURE_HEADER: None}, None, 401, id="no-signature"),
    pytest.param(VECTOR["raw_body"], {TIMESTAMP_HEADER: None}, None, 401, id="no-timestamp"),
    pytest.param(VECTOR["raw_body"], {SIGNATURE_HEADER: "not base64!"}, None, 403, id="not-b64"),
    pytest.param(VECTOR["raw_body"], {SIGNATURE_HEADER: "QUJD"}, None, 403, id="not-der"),
    pytest.param(VECTOR["raw_body"], {SIGNATURE_HEADER: "A" * 600}, None, 403, id="too-long"),
    pytest.param(VECTOR["raw_body"], {TIMESTAMP_HEADER: "16001125o2"}, None, 403, id="bad-ts"),
    pytest.param(VECTOR["raw_body"], {TIMESTAMP_HEADER: "9" * 30}, None, 403, id="huge-ts"),
    pytest.param(
        VECTOR["raw_body"].replace("dropped", "droppe\u00e9"), {}, None, 403, id="body-changed"
    ),
]


@pytest.mark.parametrize(("body", "header_changes", "key", "status"), TAMPERED)
def test_tampered_vector_is_refused_and_stores_nothing(
    make_webhook: Callable[..., Webhook],
    body: str,
    header_changes: dict[str, str | None],
    key: str | None,
    status: int,
) -> None:
    """Each change to the signed request is refused with 401/403 and nothing is written."""
    public_key = _other_key() if key == "other-key" else VECTOR["public_key_b64_spki"]
    hook = make_webhook(public_key, now=VECTOR_AT + timedelta(seconds=30))
    response = hook.client.post(
        WEBHOOK, content=body.encode(), headers=_vector_headers(**header_changes)
    )
    assert response.status_code == status, response.text
    assert "error" in response.json()
    assert hook.count(ProviderEvent) == 0
    assert hook.count(Suppression) == 0
    assert hook.count(EventInbox) == 0


def test_non_utf8_body_is_refused(webhook: Webhook) -> None:
    """A body that is not UTF-8 cannot come from SendGrid: 403, nothing stored."""
    body = b'[{"event":"bounce","email":"\xff@x.org","timestamp":1}]'
    headers = webhook.signer.headers(body, NOW)
    response = webhook.client.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code == 403
    assert response.json() == {"error": "the body is not UTF-8; the signature does not verify"}
    assert webhook.count() == 0


@pytest.mark.parametrize(
    ("signed_at", "status"),
    [
        pytest.param(NOW - timedelta(hours=48, seconds=1), 403, id="past-window"),
        pytest.param(NOW - timedelta(hours=47, minutes=59), 200, id="inside-past"),
        pytest.param(NOW + timedelta(minutes=9, seconds=59), 200, id="inside-future"),
        pytest.param(NOW + timedelta(minutes=10, seconds=1), 403, id="future-window"),
    ],
)
def test_timestamp_window(webhook: Webhook, signed_at: datetime, status: int) -> None:
    """Signed timestamps are accepted from 48 hours in the past to 10 minutes ahead."""
    event = {"event": "delivered", "email": "a@example.org", "timestamp": 1764000000}
    response = webhook.post([event], at=signed_at)
    assert response.status_code == status, response.text
    assert webhook.count() == (1 if status == 200 else 0)


def test_own_key_positive(webhook: Webhook) -> None:
    """A batch signed with our generated key is accepted, counted, stored and applied."""
    events = [
        {"event": "processed", "email": "a@example.org", "timestamp": 1764000000},
        {"event": "delivered", "email": "a@example.org", "timestamp": 1764000001},
    ]
    response = webhook.post(events)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}
    assert [r["stored"] if r else None for r in webhook.reports()] == [2]
    assert webhook.count() == 2


def test_no_key_configured_answers_404_and_stores_nothing(
    make_webhook: Callable[..., Webhook],
) -> None:
    """Without a verification key the route is not enabled and says which variable to set."""
    hook = make_webhook("")
    response = hook.post([{"event": "bounce", "email": "a@example.org", "timestamp": 1}])
    assert response.status_code == 404
    assert response.json() == {
        "error": "the SendGrid event webhook is not enabled: set "
        "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY to the verification key from SendGrid's "
        "Mail Settings"
    }
    assert hook.count() == 0


@pytest.mark.parametrize(
    "bad_key",
    [
        pytest.param("not a key", id="garbage"),
        pytest.param(
            base64.b64encode(
                rsa.generate_private_key(public_exponent=65537, key_size=2048)
                .public_key()
                .public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            ).decode(),
            id="rsa-key",
        ),
    ],
)
def test_bad_key_stops_start_up(make_settings: Callable[..., Settings], bad_key: str) -> None:
    """A configured key that is not an EC public key fails at start-up (when the settings are
    read, by every command), naming the variable."""
    with pytest.raises(ConfigurationError) as caught:
        make_settings(sendgrid_webhook_public_key=bad_key)
    assert str(caught.value) == (
        "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY: not an elliptic-curve public key; paste the "
        "'Verification Key' shown in SendGrid's Mail Settings > Signed Event Webhook"
    )


def test_pem_armoured_key_is_accepted(make_webhook: Callable[..., Webhook]) -> None:
    """The key may be pasted with PEM armour and line breaks."""
    raw = VECTOR["public_key_b64_spki"]
    pem = "-----BEGIN PUBLIC KEY-----\n" + raw[:40] + "\n" + raw[40:] + "\n-----END PUBLIC KEY-----"
    hook = make_webhook(pem, now=VECTOR_AT)
    response = hook.client.post(
        WEBHOOK, content=VECTOR["raw_body"].encode(), headers=_vector_headers()
    )
    assert response.status_code == 200


def test_body_over_the_cap_is_refused(make_webhook: Callable[..., Webhook]) -> None:
    """A body over the size cap gets 413 before any verification work."""
    from newsletter.web.webhooks import MAX_BODY_BYTES

    hook = make_webhook()
    body = b"[" + b" " * MAX_BODY_BYTES + b"]"
    response = hook.client.post(WEBHOOK, content=body, headers=hook.signer.headers(body, NOW))
    assert response.status_code == 413
    assert hook.count() == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"{not json", "the body is not valid JSON", id="not-json"),
        pytest.param(b'{"event": "bounce"}', "the body must be a JSON array", id="object"),
    ],
)
def test_signed_but_malformed_body_is_400(webhook: Webhook, body: bytes, message: str) -> None:
    """A verified body that is not an array of events gets 400 and stores nothing, not
    even in the inbox: no retry can make it a batch, and SendGrid is told so."""
    response = webhook.client.post(WEBHOOK, content=body, headers=webhook.signer.headers(body, NOW))
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    assert webhook.count() == 0
    assert webhook.count(EventInbox) == 0


def test_database_down_answers_503(tmp_path: Path) -> None:
    """An unreachable database gets 503 with Retry-After, so SendGrid retries the batch."""
    from newsletter.settings import load_settings
    from tests.conftest import base_environ

    signer = Signer()
    environ = base_environ(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    environ["NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY"] = signer.public_key
    app = App(load_settings(environ))
    client = TestClient(create_web_app(app, clock=Clock(NOW)))
    event = {"event": "delivered", "email": "a@example.org", "timestamp": 1764000000}
    body = json.dumps([event]).encode()
    response = client.post(WEBHOOK, content=body, headers=signer.headers(body, NOW))
    app.close()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "60"
    assert response.json() == {"error": "the database is unavailable; SendGrid will retry"}
