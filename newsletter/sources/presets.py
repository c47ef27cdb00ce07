"""The registry of senders: each one's verifier, field mapping, accept rule and event id.

An interpreter reads the sender's documented payload (already verified and parsed) and
returns a ``Signup`` or an ``Ignore`` with the reason. It never copies the sender's own
tags, and reports the subscriber's IP only where the sender reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jmespath
from jmespath.exceptions import JMESPathError

from newsletter.sources import verify
from newsletter.sources.fields import email_in, first_name_in, first_word, flat, normalized, text
from newsletter.sources.safe_json import BodyError, parse_json_object
from newsletter.sources.verify import Inbound, Verifier


@dataclass(frozen=True)
class Signup:
    email: str
    first_name: str | None = None
    timezone: str | None = None
    event_id: str | None = None
    consent: bool | None = None  # the sender's marketing-consent flag; None: it has none
    ip: str | None = None  # the subscriber's, as the sender reports it


@dataclass(frozen=True)
class Ignore:
    reason: str


Reading = Signup | Ignore
Mapping_ = Mapping[str, Any]
# (parsed body, the request, the source's compiled ``map:``) -> what to do
Interpreter = Callable[[Any, Inbound, Mapping[str, Any]], Reading]


@dataclass(frozen=True)
class Preset:
    name: str
    verifier: Verifier
    interpret: Interpreter
    summary: str
    body: Literal["json", "form"] = "json"
    consent_flag: bool = False  # a signed checkout that carries a marketing-consent flag


def _shown(value: Any, limit: int) -> str:
    """A sender's value in a reason: quoted when text, cut to ``limit`` characters."""
    return repr(value[:limit]) if isinstance(value, str) else repr(value)[:limit]


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str) and str(value).strip():
        return str(value).strip()[:200]
    return None


def _no_email(where: str) -> Ignore:
    return Ignore(f"no email address in {where}")


def webflow(data: Any, request: Inbound, _: Mapping[str, Any]) -> Reading:
    """Webflow v2 ``form_submission``: fields in ``payload.data``, id in ``payload.id``."""
    body = _obj(data)
    if body.get("triggerType") != "form_submission":
        return Ignore(
            f"Webflow event {_shown(body.get('triggerType'), 60)} is not a form_submission"
        )
    payload = _obj(body.get("payload"))
    email, first_name = flat(_obj(payload.get("data")))
    if not email:
        return _no_email("payload.data")
    return Signup(email, first_name, event_id=_id(payload.get("id")))


def tally(data: Any, request: Inbound, _: Mapping[str, Any]) -> Reading:
    """Tally ``FORM_RESPONSE``: ``data.fields`` is a list of ``{label, type, value}``."""
    body = _obj(data)
    if body.get("eventType") != "FORM_RESPONSE":
        return Ignore(f"Tally event {_shown(body.get('eventType'), 60)} is not FORM_RESPONSE")
    fields = [f for f in _obj(body.get("data")).get("fields") or [] if isinstance(f, dict)]
    typed = [f.get("value") for f in fields if f.get("type") == "INPUT_EMAIL"]
    pairs = [(str(f.get("label") or f.get("key") or ""), f.get("value")) for f in fields]
    email = next((text(v) for v in typed if text(v)), None) or email_in(pairs)
    if not email:
        return _no_email("data.fields")
    return Signup(email, first_name_in(pairs), event_id=_id(body.get("eventId")))


def typeform(data: Any, request: Inbound, _: Mapping[str, Any]) -> Reading:
    """Typeform ``form_response``: ``answers`` typed by field; titles in ``definition``."""
    body = _obj(data)
    if body.get("event_type") != "form_response":
        return Ignore(f"Typeform event {_shown(body.get('event_type'), 60)} is not form_response")
    response = _obj(body.get("form_response"))
    answers = [a for a in response.get("answers") or [] if isinstance(a, dict)]
    email = next((text(a.get("email")) for a in answers if a.get("type") == "email"), None)
    if not email:
        return _no_email("form_response.answers")
    titles = {
        str(f.get("id")): str(f.get("title") or f.get("ref") or "")
        for f in _obj(response.get("definition")).get("fields") or []
        if isinstance(f, dict)
    }
    pairs = [
        (titles.get(str(_obj(a.get("field")).get("id")), ""), a.get("text"))
        for a in answers
        if a.get("type") == "text"
    ]
    first_name = first_name_in(pairs) or first_name_in(
        (k, v) for k, v in _obj(response.get("hidden")).items()
    )
    return Signup(email, first_name, event_id=_id(body.get("event_id")))


def formspree(data: Any, request: Inbound, _: Mapping[str, Any]) -> Reading:
    """Formspree: ``{"form": id, "keys": [...], "submission": {field: value, "_date": ...}}``."""
    body = _obj(data)
    submission = _obj(body.get("submission"))
    email, first_name = flat({k: v for k, v in submission.items() if not k.startswith("_")})
    if not email:
        return _no_email("submission")
    form, date = _id(body.get("form")), _id(submission.get("_date"))
    return Signup(email, first_name, event_id=f"{form}:{date}" if form and date else None)


def framer(data: Any, request: Inbound, _: Mapping[str, Any]) -> Reading:
    """Framer: a flat object keyed by the form's input names; id in a header."""
    email, first_name = flat(_obj(data))
    if not email:
        return _no_email("the form fields")
    return Signup(
        email,
        first_name,
        event_id=_id(request.headers.get("framer-webhook-submission-id")),
    )


def jotform(data: Any, request: Inbound, _: Mapping[str, Any]) -> Reading:
    """Jotform: form fields; the answers are JSON inside ``rawRequest`` (``q3_email``)."""
    fields = _obj(data)
    raw = fields.get("rawRequest")
    if not isinstance(raw, str):
        raise BodyError("a Jotform post carries its answers in the rawRequest field")
    answers = parse_json_object(raw)
    pairs: list[tuple[str, Any]] = []
    first_name: str | None = None
    for key, value in answers.items():
        label = key.split("_", 1)[1] if key[:1] == "q" and "_" in key else key
        if isinstance(value, dict) and "name" in normalized(label):
            first_name = first_name or text(value.get("first"))
        pairs.append((label, value))
    email = email_in(pairs)
    if not email:
        return _no_email("rawRequest")
    return Signup(
        email,
        first_name or first_name_in(pairs),
        event_id=_id(fields.get("submissionID")),
        ip=text(fields.get("ip")),
    )


SHOPIFY_CUSTOMER_TOPICS = ("customers/create", "customers/update")
SHOPIFY_ORDER_TOPICS = ("orders/create", "checkouts/create")


def shopify(data: Any, request: Inbound, _: Mapping[str, Any]) -> Reading:
    """Shopify customer or order: only ``email_marketing_consent.state == "subscribed"``."""
    topic = request.headers.get("x-shopify-topic", "")
    body = _obj(data)
    if topic in SHOPIFY_CUSTOMER_TOPICS:
        customer, ip = body, None
    elif topic in SHOPIFY_ORDER_TOPICS:
        customer = _obj(body.get("customer"))
        ip = text(body.get("browser_ip")) or text(
            _obj(body.get("client_details")).get("browser_ip")
        )
    else:
        return Ignore(f"Shopify topic {topic[:60]!r} is not a customer or order creation")
    state = _obj(customer.get("email_marketing_consent")).get("state")
    if state != "subscribed":
        return Ignore(
            f"the customer's email_marketing_consent.state is {_shown(state, 40)}, not 'subscribed'"
        )
    email = text(customer.get("email")) or text(body.get("email"))
    if not email:
        return _no_email("the Shopify customer")
    event = request.headers.get("x-shopify-webhook-id") or request.headers.get("x-shopify-event-id")
    return Signup(
        email,
        text(customer.get("first_name")),
        event_id=_id(event) or f"{topic}:{_id(body.get('id'))}",
        consent=True,
        ip=ip,
    )


def woocommerce(data: Any, request: Inbound, _: Mapping[str, Any]) -> Reading:
    """WooCommerce ``order.created``: ``billing.email``; the order carries no consent flag."""
    topic = request.headers.get("x-wc-webhook-topic", "")
    if topic != "order.created":
        return Ignore(f"WooCommerce topic {topic[:60]!r} is not order.created")
    body = _obj(data)
    billing = _obj(body.get("billing"))
    email = text(billing.get("email"))
    if not email:
        return _no_email("billing.email")
    order = _id(body.get("id"))
    return Signup(
        email,
        text(billing.get("first_name")),
        event_id=f"order.created:{order}" if order else None,
        ip=text(body.get("customer_ip_address")),
    )


def stripe(data: Any, request: Inbound, _: Mapping[str, Any]) -> Reading:
    """Stripe ``checkout.session.completed`` with ``consent.promotions == "opt_in"``."""
    event = _obj(data)
    if event.get("type") != "checkout.session.completed":
        return Ignore(
            f"Stripe event {_shown(event.get('type'), 60)} is not checkout.session.completed"
        )
    session = _obj(_obj(event.get("data")).get("object"))
    promotions = _obj(session.get("consent")).get("promotions")
    if promotions != "opt_in":
        return Ignore(f"the session's consent.promotions is {_shown(promotions, 40)}, not 'opt_in'")
    details = _obj(session.get("customer_details"))
    email = text(details.get("email")) or text(session.get("customer_email"))
    if not email:
        return _no_email("customer_details.email")
    return Signup(
        email, first_word(text(details.get("name"))), event_id=_id(event.get("id")), consent=True
    )


MAP_FIELDS = ("email", "first_name", "timezone", "event_id", "ip")


def compile_map(expressions: Mapping[str, str]) -> dict[str, Any]:
    """JMESPath expressions compiled once; raises ``ValueError`` naming the bad one."""
    compiled: dict[str, Any] = {}
    for name, expression in expressions.items():
        try:
            compiled[name] = jmespath.compile(expression)
        except JMESPathError as exc:
            raise ValueError(
                f"map.{name}: {expression!r} is not a JMESPath expression: {exc}"
            ) from None
    return compiled


def generic(data: Any, request: Inbound, mapping: Mapping[str, Any]) -> Reading:
    """Any JSON sender, mapped with the source's ``map:`` (JMESPath) or the usual names."""
    if not mapping:
        email, first_name = flat(_obj(data))
        if not email:
            return _no_email("the body (add a map: for nested fields)")
        return Signup(email, first_name)
    found = {}
    for name, expression in mapping.items():
        try:
            found[name] = expression.search(data)
        except JMESPathError:  # a type error at run time: nothing found there
            found[name] = None
    email = text(found.get("email"))
    if not email:
        return _no_email(f"map.email ({mapping['email'].expression})")
    return Signup(
        email,
        first_word(text(found.get("first_name"))),
        timezone=text(found.get("timezone")),
        event_id=_id(found.get("event_id")),
        ip=text(found.get("ip")),
    )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("webflow", verify.webflow, webflow, "Webflow v2 form_submission"),
        Preset("tally", verify.TALLY, tally, "Tally FORM_RESPONSE"),
        Preset("typeform", verify.TYPEFORM, typeform, "Typeform form_response"),
        Preset("formspree", verify.FORMSPREE, formspree, "Formspree submission"),
        Preset("framer", verify.framer, framer, "Framer form webhook"),
        Preset("jotform", verify.url_token, jotform, "Jotform (URL token)", body="form"),
        Preset("shopify", verify.SHOPIFY, shopify, "Shopify customers/orders", consent_flag=True),
        Preset("woocommerce", verify.WOOCOMMERCE, woocommerce, "WooCommerce order.created"),
        Preset(
            "stripe", verify.STRIPE, stripe, "Stripe checkout.session.completed", consent_flag=True
        ),
        Preset("generic", verify.NEWSLETTER, generic, "any JSON sender (X-Newsletter-Signature)"),
    )
}
