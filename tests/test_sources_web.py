"""POST /subscribe/{source}: each sender's documented payload, signed with its own scheme."""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.errors import ContentError
from newsletter.models import ConsentEvent, Delivery, SourceEvent, Subscriber
from newsletter.settings import Settings
from newsletter.web.app import create_web_app
from tests.conftest import NOW, Ticks
from tests.source_senders import encode, sample, signature_headers

SOURCES_YAML = """
sources:
  webflow: {preset: webflow, secret_env: SRC_WEBFLOW}
  tally: {preset: tally, secret_env: SRC_TALLY}
  typeform: {preset: typeform, secret_env: SRC_TYPEFORM}
  formspree: {preset: formspree, secret_env: SRC_FORMSPREE}
  framer: {preset: framer, secret_env: SRC_FRAMER}
  jotform: {preset: jotform, secret_env: SRC_JOTFORM}
  shop:
    preset: shopify
    secret_env: SRC_SHOP
    opt_in: single_if_consent
    consent_text: "Email me with news and offers"
    tags: [customers]
    rate_limit: 1000/minute
  shop-double: {preset: shopify, secret_env: SRC_SHOP_DOUBLE}
  woo: {preset: woocommerce, secret_env: SRC_WOO, tags: [buyers]}
  checkout:
    preset: stripe
    secret_env: SRC_CHECKOUT
    opt_in: single_if_consent
    consent_text: "Send me back-care tips every few days"
  site:
    preset: generic
    secret_env: SRC_SITE
    map:
      email: 'payload.data.email'
      first_name: 'payload.data."First Name"'
      event_id: 'payload.id'
    consent_text: "Send me back-care tips every few days"
  site-token:
    preset: generic
    verify: token
    secret_env: SRC_SITE_TOKEN
  tiny: {preset: generic, secret_env: SRC_TINY, rate_limit: 2/minute, max_body_bytes: 1024}
  tiered: {preset: generic, secret_env: SRC_TIERED, rate_limit: 2/minute;3/hour}
"""


@dataclass(frozen=True)
class Case:
    source: str
    kind: str  # how the sender signs (tests.source_senders)
    sample: str
    email: str
    first_name: str | None
    event_id: str | None
    opt_in: str = "double"
    ip: str | None = None
    tags: list[str] = field(default_factory=list)
    consent_text: str = "v1: I want to receive emails with back pain relief tips every few days."
    topic: str | None = None
    # a change to the payload that leaves nothing to act on, and the reason words
    ignorable: Callable[[Any], Any] | None = None
    ignored_because: str = ""
    ignored_topic: str | None = None


def _set(path: str, value: Any) -> Callable[[Any], Any]:
    def change(payload: Any) -> Any:
        changed = copy.deepcopy(payload)
        target = changed
        *parents, last = path.split(".")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
        return changed

    return change


def _jotform_without_email(payload: dict[str, Any]) -> dict[str, Any]:
    changed = dict(payload)
    raw = json.loads(changed["rawRequest"])
    del raw["q4_email"]
    changed["rawRequest"] = json.dumps(raw)
    return changed


CASES = [
    Case(
        "webflow",
        "webflow",
        "webflow",
        "zaphod@heartofgold.ai",
        "Zaphod",
        "6321ca84df3949bfc6752327",
        ignorable=_set("triggerType", "site_publish"),
        ignored_because="not a form_submission",
    ),
    Case(
        "tally",
        "tally",
        "tally",
        "alice@example.com",
        "Alice",
        "a4cb511e-d513-4fa5-baee-b815d718dfd1",
        ignorable=_set("data.fields", []),
        ignored_because="no email address",
    ),
    Case(
        "typeform",
        "typeform",
        "typeform",
        "laura@example.com",
        "Laura",
        "01GKJ1N7S8QKYYB4FBX3E2YMV3",
        ignorable=_set("form_response.answers", []),
        ignored_because="no email address",
    ),
    Case(
        "formspree",
        "formspree",
        "formspree",
        "ada@example.com",
        "Ada",
        "mqkrrqgo:2021-04-07T15:04:35.744Z",
        ignorable=_set("submission", {"message": "hi"}),
        ignored_because="no email address",
    ),
    Case(
        "framer",
        "framer",
        "framer",
        "grace@example.com",
        "Grace",
        "0fbbb90e-564b-4870-ac8b-78f9bc4e44a6",
        ignorable=lambda p: {"Message": "hi"},
        ignored_because="no email address",
    ),
    Case(
        "jotform",
        "jotform",
        "jotform",
        "katherine@example.com",
        "Katherine",
        "5712345678901234567",
        ip="203.0.113.7",
        ignorable=_jotform_without_email,
        ignored_because="no email address",
    ),
    Case(
        "shop",
        "shopify",
        "shopify",
        "bob@biller.com",
        "Bob",
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        opt_in="single",
        tags=["customers"],
        consent_text="Email me with news and offers",
        ignorable=_set("email_marketing_consent.state", "not_subscribed"),
        ignored_because="not 'subscribed'",
    ),
    Case(
        "shop-double",
        "shopify",
        "shopify",
        "bob@biller.com",
        "Bob",
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ignorable=lambda p: p,
        ignored_topic="products/create",
        ignored_because="not a customer or order creation",
    ),
    Case(
        "woo",
        "woocommerce",
        "woocommerce",
        "john.doe@example.com",
        "John",
        "order.created:727",
        ip="198.51.100.23",
        tags=["buyers"],
        ignorable=lambda p: p,
        ignored_topic="order.updated",
        ignored_because="is not order.created",
    ),
    Case(
        "checkout",
        "stripe",
        "stripe",
        "jenny.rosen@example.com",
        "Jenny",
        "evt_1Ep24XHssDVaQm2PpwS19Yt0",
        opt_in="single",
        consent_text="Send me back-care tips every few days",
        ignorable=_set("data.object.consent.promotions", None),
        ignored_because="not 'opt_in'",
    ),
    Case(
        "site",
        "generic",
        "generic",
        "pat@example.com",
        "Pat",
        "sub_42",
        consent_text="Send me back-care tips every few days",
        ignorable=_set("payload.data", {"name": "Pat"}),
        ignored_because="no email address",
    ),
    Case(
        "site-token",
        "generic-token",
        "framer",
        "grace@example.com",
        "Grace",
        None,
        ignorable=lambda p: {"Message": "hi"},
        ignored_because="no email address",
    ),
]
IDS = [case.source for case in CASES]


def secret_of(source: str) -> tuple[str, str]:
    return f"new-secret-{source}-0123456789abcdef", f"old-secret-{source}-0123456789abcdef"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def sources_app(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
    ticks: Ticks,
) -> Iterator[tuple[TestClient, App]]:
    path = tmp_path / "sources.yaml"
    path.write_text(SOURCES_YAML)
    for name in (
        "webflow",
        "tally",
        "typeform",
        "formspree",
        "framer",
        "jotform",
        "shop",
        "shop-double",
        "woo",
        "checkout",
        "site",
        "site-token",
        "tiny",
        "tiered",
    ):
        monkeypatch.setenv(f"SRC_{name.upper().replace('-', '_')}", ",".join(secret_of(name)))
    application = App(make_settings(sources_file=str(path)))
    yield TestClient(create_web_app(application, clock=clock, monotonic=ticks)), application
    application.close()


@pytest.fixture
def client(sources_app: tuple[TestClient, App]) -> TestClient:
    return sources_app[0]


@pytest.fixture
def app(sources_app: tuple[TestClient, App]) -> App:
    return sources_app[1]


def post(
    client: TestClient,
    case: Case,
    payload: Any,
    *,
    secret: str | None = None,
    now: datetime = NOW,
    tamper: Callable[[bytes], bytes] | None = None,
    signed: bool = True,
    topic: str | None = None,
) -> Response:
    body, content_type = encode(case.kind, payload)
    headers, query = signature_headers(
        case.kind, body, secret or secret_of(case.source)[0], now, topic=topic or case.topic
    )
    if not signed:
        headers = {k: v for k, v in headers.items() if "topic" in k.lower() or "id" in k.lower()}
        headers = {k: v for k, v in headers.items() if "signature" not in k.lower()}
        headers.pop("X-Shopify-Hmac-Sha256", None)
        query = {}
    if tamper is not None:
        body = tamper(body)
    return client.post(
        f"/subscribe/{case.source}",
        content=body,
        params=query,
        headers={"Content-Type": content_type, **headers},
    )


def counts(app: App) -> tuple[int, int, int, int]:
    with app.sessions() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Subscriber, ConsentEvent, SourceEvent, Delivery)
        )


NOTHING = (0, 0, 0, 0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_documented_delivery_is_accepted_mapped_and_consent_decided(
    client: TestClient, app: App, case: Case
) -> None:
    """The sender's own payload, signed its way: one subscriber, the right opt-in."""
    response = post(client, case, sample(case.sample))
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "accepted", "opt_in": case.opt_in}
    with app.sessions() as session:
        subscriber = session.scalars(select(Subscriber)).one()
        consent = session.scalars(
            select(ConsentEvent).where(ConsentEvent.kind == "subscribed")
        ).one()
        confirmations = session.scalar(select(func.count()).select_from(Delivery))
    assert subscriber.email == case.email
    assert subscriber.first_name == case.first_name
    assert subscriber.source == case.source
    assert subscriber.tags == case.tags  # never the sender's own ("VIP, wholesale")
    assert subscriber.status == ("active" if case.opt_in == "single" else "pending")
    assert (consent.source, consent.source_event_id) == (case.source, case.event_id)
    assert consent.consent_text == case.consent_text
    assert consent.ip == case.ip  # the subscriber's as the sender reports it, never ours
    if case.opt_in == "double":
        assert confirmations == 1
    else:
        assert confirmations == 0  # no confirmation email; the welcome comes from the drip


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_previous_secret_still_verifies_during_a_rotation(
    client: TestClient, app: App, case: Case
) -> None:
    response = post(client, case, sample(case.sample), secret=secret_of(case.source)[1])
    assert response.status_code == 202, response.text


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_tampered_delivery_is_401_and_writes_nothing(
    client: TestClient, app: App, case: Case
) -> None:
    if case.kind in ("jotform", "generic-token"):  # a URL token signs nothing: use a wrong one
        response = post(client, case, sample(case.sample), secret="wrong-token")
    else:
        response = post(
            client,
            case,
            sample(case.sample),
            tamper=lambda b: (
                b.replace(b"example", b"exampla") if b"example" in b else b.replace(b"@", b"+x@")
            ),
        )
    assert response.status_code == 401, response.text
    assert "error" in response.json()
    assert counts(app) == NOTHING


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_an_unsigned_delivery_is_401_and_writes_nothing(
    client: TestClient, app: App, case: Case
) -> None:
    response = post(client, case, sample(case.sample), signed=False)
    assert response.status_code == 401, response.text
    assert counts(app) == NOTHING


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_signature_by_another_secret_is_401(client: TestClient, app: App, case: Case) -> None:
    response = post(client, case, sample(case.sample), secret="someone-elses-secret")
    assert response.status_code == 401
    assert counts(app) == NOTHING


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_an_ignorable_delivery_is_2xx_with_the_reason_and_writes_nothing(
    client: TestClient, app: App, case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    assert case.ignorable is not None
    caplog.set_level(logging.INFO, logger="newsletter.sources")
    response = post(client, case, case.ignorable(sample(case.sample)), topic=case.ignored_topic)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ignored"
    assert case.ignored_because in response.json()["reason"]
    assert case.ignored_because in caplog.text
    assert counts(app) == NOTHING


@pytest.mark.parametrize("case", [c for c in CASES if c.event_id], ids=lambda c: c.source)
def test_a_replayed_event_is_a_2xx_no_op(client: TestClient, app: App, case: Case) -> None:
    assert post(client, case, sample(case.sample)).status_code == 202
    before = counts(app)
    again = post(client, case, sample(case.sample))
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert counts(app) == before


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.kind in ("webflow", "stripe", "formspree")],
    ids=lambda c: c.source,
)
@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_a_signature_outside_the_senders_time_window_is_401(
    client: TestClient, app: App, case: Case, offset: timedelta
) -> None:
    response = post(client, case, sample(case.sample), now=NOW + offset)
    assert response.status_code == 401
    assert "timestamp" in response.json()["error"]
    assert counts(app) == NOTHING


def test_a_shopify_order_takes_the_browser_ip_the_order_reports(
    client: TestClient, app: App
) -> None:
    order = {
        "id": 820982911946154508,
        "email": "jon@example.com",
        "browser_ip": "216.191.105.146",
        "client_details": {"browser_ip": "216.191.105.146", "user_agent": "Mozilla/5.0"},
        "tags": "imported, vip",
        "customer": {
            "id": 115310627314723954,
            "email": "jon@example.com",
            "first_name": "Jon",
            "tags": "VIP",
            "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        },
    }
    case = CASES[IDS.index("shop")]
    response = post(client, case, order, topic="orders/create")
    assert response.status_code == 202, response.text
    with app.sessions() as session:
        subscriber = session.scalars(select(Subscriber)).one()
        consent = session.scalars(
            select(ConsentEvent).where(ConsentEvent.kind == "subscribed")
        ).one()
    assert (subscriber.status, subscriber.tags) == ("active", ["customers"])
    assert consent.ip == "216.191.105.146"


def test_a_shopify_customer_without_consent_gets_no_email_and_no_consent_record(
    client: TestClient, app: App
) -> None:
    customer = sample("shopify")
    customer["email_marketing_consent"] = {"state": "not_subscribed", "opt_in_level": None}
    response = post(client, CASES[IDS.index("shop-double")], customer)
    assert response.json()["status"] == "ignored"
    assert counts(app) == NOTHING


def test_the_woocommerce_activation_ping_is_answered_200(client: TestClient, app: App) -> None:
    response = client.post(
        "/subscribe/woo",
        content=b"webhook_id=15",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "reason": "WooCommerce activation ping"}
    assert counts(app) == NOTHING


def test_a_genuine_website_field_never_drops_a_source_signup(client: TestClient, app: App) -> None:
    """Webflow's sample has a filled ``website`` field: it is data here, not a honeypot."""
    assert sample("webflow")["payload"]["data"]["website"]
    assert post(client, CASES[0], sample("webflow")).status_code == 202
    assert counts(app)[0] == 1


def test_an_unknown_source_is_404(client: TestClient) -> None:
    response = client.post("/subscribe/nope", json={"email": "a@example.com"})
    assert response.status_code == 404
    assert "no source 'nope'" in response.json()["error"]


def test_a_source_without_its_secret_is_404_naming_the_variable(
    make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("sources:\n  t: {preset: tally, secret_env: SRC_UNSET_ANYWHERE}\n")
    application = App(make_settings(sources_file=str(path)))
    try:
        client = TestClient(create_web_app(application, clock=clock))
        response = client.post("/subscribe/t", json={"eventType": "FORM_RESPONSE"})
    finally:
        application.close()
    assert response.status_code == 404
    assert "SRC_UNSET_ANYWHERE" in response.json()["error"]


def test_the_rate_limit_is_per_source_not_per_ip(client: TestClient, app: App) -> None:
    case = Case("tiny", "generic", "framer", "grace@example.com", "Grace", None)
    answers = [post(client, case, {"email": f"r{i}@example.com"}).status_code for i in range(3)]
    assert answers == [202, 202, 429]
    # another source is not slowed down by this one
    assert post(client, CASES[IDS.index("tally")], sample("tally")).status_code == 202


def test_every_limit_of_a_sources_rate_counts(client: TestClient, ticks: Ticks) -> None:
    """``2/minute;3/hour``: past the minute the hour's limit still refuses the 4th post."""
    case = Case("tiered", "generic", "framer", "grace@example.com", "Grace", None)
    answers = [post(client, case, {"email": f"t{i}@example.com"}).status_code for i in range(3)]
    assert answers == [202, 202, 429]
    ticks.advance(61)
    answers = [post(client, case, {"email": f"u{i}@example.com"}).status_code for i in range(2)]
    assert answers == [202, 429]  # three in the hour
    refused = post(client, case, {"email": "v@example.com"})
    assert refused.json() == {"error": "too many posts to source 'tiered'; retry in a minute"}
    ticks.advance(3600)
    assert post(client, case, {"email": "w@example.com"}).status_code == 202


def test_a_refused_post_starts_no_thread(client: TestClient) -> None:
    """The limiter is plain data: no timer thread (``limits``' MemoryStorage started one)."""
    case = Case("tiered", "generic", "framer", "grace@example.com", "Grace", None)
    for i in range(2):  # the accepted posts start the app's own threads (pool, sender)
        assert post(client, case, {"email": f"a{i}@example.com"}).status_code == 202
    before = set(threading.enumerate())
    answers = {post(client, case, {"email": "b@example.com"}).status_code for _ in range(50)}
    assert answers == {429}
    assert [(t.name, type(t).__name__) for t in set(threading.enumerate()) - before] == []


def test_a_bad_limit_anywhere_in_a_sources_rate_stops_the_start(
    make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("sources:\n  t: {preset: tally, secret_env: X, rate_limit: 10/minute;lots}\n")
    application = App(make_settings(sources_file=str(path)))
    try:
        with pytest.raises(ContentError) as caught:
            create_web_app(application, clock=clock)
    finally:
        application.close()
    assert f"{path}:2: t: rate_limit '10/minute;lots' must look like 120/minute" in str(
        caught.value
    )


def test_the_body_limit_is_per_source(client: TestClient, app: App) -> None:
    case = Case("tiny", "generic", "framer", "grace@example.com", "Grace", None)
    response = post(client, case, {"email": "a@example.com", "pad": "x" * 2000})
    assert response.status_code == 413
    assert counts(app) == NOTHING
    big = sample("framer") | {"Message": "x" * 4000}  # the same size is fine for framer
    assert post(client, CASES[IDS.index("framer")], big).status_code == 202


HOSTILE = {
    "deep nesting": b'{"email": "a@example.com", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "huge integer": b'{"email": "a@example.com", "n": ' + b"9" * 5000 + b"}",
    "lone surrogate": b'{"email": "a@example.com", "name": "\\ud800"}',
    "escaped NUL": b'{"email": "a@example.com", "name": "Pat\\u0000"}',
    "NUL in a key": b'{"email": "a@example.com", "na\\u0000me": "Pat"}',
    "NaN": b'{"email": "a@example.com", "n": NaN}',
    "not JSON": b"email=a@example.com",
    "not UTF-8": b'{"email": "\xff"}',
    "empty": b"",
}


@pytest.mark.parametrize("body", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_hostile_json_body_that_is_signed_is_400_and_writes_nothing(
    client: TestClient, app: App, body: bytes
) -> None:
    headers, _ = signature_headers("generic", body, secret_of("site")[0], NOW)
    response = client.post(
        "/subscribe/site", content=body, headers={"Content-Type": "application/json", **headers}
    )
    assert response.status_code == 400, response.text
    assert counts(app) == NOTHING


def test_hostile_json_inside_jotforms_raw_request_is_400(client: TestClient, app: App) -> None:
    payload = sample("jotform") | {"rawRequest": '{"q4_email": "a@example.com", "x": "\\ud800"}'}
    response = post(client, CASES[IDS.index("jotform")], payload)
    assert response.status_code == 400
    assert counts(app) == NOTHING


def test_the_browser_route_keeps_its_honeypot_under_its_setting(
    make_settings: Callable[..., Settings], clock: Clock, unique_email: Callable[[], str]
) -> None:
    application = App(make_settings(honeypot_field="hp_company_url"))
    try:
        client = TestClient(create_web_app(application, clock=clock))
        kept = unique_email()
        client.post("/subscribe", json={"email": kept, "website": "https://real.example"})
        client.post("/subscribe", json={"email": unique_email(), "hp_company_url": "bot"})
        with application.sessions() as session:
            emails = session.scalars(select(Subscriber.email)).all()
    finally:
        application.close()
    assert emails == [kept]
