"""One delivery from a source: authentic? what does it ask? which opt-in? (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from newsletter.addresses import normalize_email
from newsletter.errors import InvalidEmailError
from newsletter.sources import verify
from newsletter.sources.config import SourceConfig
from newsletter.sources.presets import PRESETS, Ignore, Signup, compile_map
from newsletter.sources.safe_json import BodyError, check_text, parse_json
from newsletter.sources.verify import Inbound, Unauthorized

WOOCOMMERCE_PING = re.compile(rb"webhook_id=\d{1,20}")


@dataclass(frozen=True)
class Verdict:
    """What a delivery does: ``subscribe`` (with the opt-in decided) or ``ignore`` (why)."""

    source: str
    action: Literal["subscribe", "ignore"]
    reason: str
    signup: Signup | None = None
    single_opt_in: bool = False
    consent_text: str | None = None
    tags: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "source": self.source,
            "action": self.action,
            "reason": self.reason,
        }
        if self.signup is not None:
            found["fields"] = {
                "email": self.signup.email,
                "first_name": self.signup.first_name,
                "timezone": self.signup.timezone,
                "ip": self.signup.ip,
            }
            found["event_id"] = self.signup.event_id
            found["opt_in"] = "single" if self.single_opt_in else "double"
            found["consent_text"] = self.consent_text
            found["tags"] = list(self.tags)
        return found


def is_activation_ping(source: SourceConfig, request: Inbound) -> bool:
    """WooCommerce's unsigned ``webhook_id=<n>`` post when a webhook is saved (answer 200)."""
    return source.preset == "woocommerce" and bool(WOOCOMMERCE_PING.fullmatch(request.body.strip()))


def check_authentic(
    source: SourceConfig, request: Inbound, *, secrets: Sequence[str], now: datetime
) -> None:
    """Raise ``Unauthorized`` unless the sender's scheme verifies with one of ``secrets``."""
    if not secrets:
        raise Unauthorized(f"source {source.name!r} has no secret configured")
    verifier = verify.url_token if source.verify == "token" else PRESETS[source.preset].verifier
    verifier(secrets, request, now)


def parse_body(source: SourceConfig, request: Inbound, fields: Mapping[str, Any] | None) -> Any:
    """The parsed body: JSON, or the form fields the edge decoded (``BodyError`` if broken)."""
    if PRESETS[source.preset].body == "form" and fields is not None:
        for key, value in fields.items():
            check_text(key, "a form field name")
            check_text(value if isinstance(value, str) else "", "a form field")
        return dict(fields)
    if not request.body.strip():
        raise BodyError("the body is empty; the sender must post JSON")
    return parse_json(request.body)


def read_delivery(
    source: SourceConfig, request: Inbound, fields: Mapping[str, Any] | None = None
) -> Verdict:
    """What an (already authenticated) delivery asks for. Raises ``BodyError``."""
    if is_activation_ping(source, request):
        return Verdict(source.name, "ignore", "WooCommerce activation ping")
    preset = PRESETS[source.preset]
    data = parse_body(source, request, fields)
    reading = preset.interpret(data, request, compile_map(source.map))
    if isinstance(reading, Ignore):
        return Verdict(source.name, "ignore", reading.reason)
    try:
        email = normalize_email(reading.email)
    except InvalidEmailError as exc:
        return Verdict(source.name, "ignore", f"the email address is not valid: {exc.reason}")
    single = source.single_opt_in_allowed and preset.consent_flag and reading.consent is True
    signup = Signup(
        email=email,
        first_name=reading.first_name,
        timezone=reading.timezone,
        event_id=reading.event_id,
        consent=reading.consent,
        ip=reading.ip,
    )
    return Verdict(
        source.name,
        "subscribe",
        "single opt-in: the sender reports the subscriber's marketing consent"
        if single
        else "double opt-in: a confirmation email asks the subscriber",
        signup=signup,
        single_opt_in=single,
        consent_text=source.consent_text,
        tags=source.tags,
    )
