"""Pure parts of the event webhook: parsing, logical keys, scrubbing, and the policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.addresses import normalize_email
from newsletter.errors import InvalidEmailError
from newsletter.events.parsing import (
    EventPayloadError,
    ParsedEvent,
    event_email,
    parse_batch,
    parse_event,
)
from newsletter.events.policy import Effect, applies, effect_of, target_status
from newsletter.models import SubscriberStatus as S

BASE: dict[str, Any] = {
    "email": "Reader@Example.org",
    "event": "delivered",
    "timestamp": 1764000000,
    "sg_event_id": "e1",
    "sg_message_id": "MSG.filter-1",
}


def parsed(**changes: Any) -> ParsedEvent:
    event = parse_event({**BASE, **changes})
    assert isinstance(event, ParsedEvent), event
    return event


def _validator_form(raw: str) -> str:
    """What the parser stored for an address before its fast path for plain ones."""
    try:
        return normalize_email(raw)
    except InvalidEmailError:
        return raw.strip().lower()[:320]


_ATOM = "aZ09.-+_'!#$%&*/=?^`{|}~"
_ADDRESSES = st.builds(
    "{}{}@{}{}".format,
    st.sampled_from(["", " ", "\t"]),
    st.text(_ATOM, min_size=0, max_size=70),
    st.text("aZ09.-", min_size=0, max_size=40).map(lambda d: d.replace("Z", "Z.")),
    st.sampled_from(["", ".com", ".ORG", ".xn--bcher-kva.com", ".invalid", ".", " "]),
)


@pytest.mark.parametrize(
    "raw",
    [
        "Reader@Example.ORG",
        " a.b+c@sub.example.co ",
        "a@XN--bcher-kva.com",
        "a..b@example.org",
        "a@localhost",
        "a@example.invalid",
        "x" * 70 + "@example.org",
        "A@" + "b" * 250 + ".com",
        "ü@example.org",
        '"quoted"@example.org',
    ],
)
def test_plain_address_fast_path_matches_the_validator(raw: str) -> None:
    assert parsed(email=raw).email == _validator_form(raw)


@settings(max_examples=300, deadline=None)
@given(_ADDRESSES)
def test_plain_address_fast_path_matches_the_validator_for_any_ascii(raw: str) -> None:
    """The shortcut for plain ASCII addresses stores what the validator would have."""
    assert parsed(email=raw).email == _validator_form(raw)


def test_fields_are_normalised() -> None:
    event = parsed(delivery_id="42")
    assert (event.email, event.delivery_id, event.provider_message_id) == (
        "reader@example.org",
        42,
        "MSG",
    )
    assert event.occurred_at == datetime(2025, 11, 24, 16, 0, tzinfo=UTC)
    assert "email" not in event.payload


@pytest.mark.parametrize(
    ("changes", "same"),
    [
        pytest.param({"sg_event_id": "other"}, True, id="new-event-id"),
        pytest.param({"email": "READER@example.org "}, True, id="address-case"),
        pytest.param({"timestamp": "1764000000"}, True, id="timestamp-as-text"),
        pytest.param({"ip": "192.0.2.1"}, True, id="extra-field"),
        pytest.param({"timestamp": 1764000001}, False, id="other-second"),
        pytest.param({"event": "open"}, False, id="other-event"),
        pytest.param({"sg_message_id": "MSG2.filter"}, False, id="other-message"),
        pytest.param({"email": "other@example.org"}, False, id="other-address"),
    ],
)
def test_logical_key(changes: dict[str, Any], same: bool) -> None:
    """The logical key ignores the event id and spelling, and nothing else."""
    assert (parsed(**changes).logical_key == parsed().logical_key) is same


def test_clicks_on_different_links_are_different_events() -> None:
    one = parsed(event="click", url="https://a.example")
    two = parsed(event="click", url="https://b.example")
    assert one.logical_key != two.logical_key


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param("text", "not a JSON object", id="not-object"),
        pytest.param({**BASE, "event": None}, "no usable 'event' name", id="no-event"),
        pytest.param({**BASE, "event": "x" * 33}, "no usable 'event' name", id="long-event"),
        pytest.param({**BASE, "timestamp": None}, "no usable 'timestamp'", id="no-ts"),
        pytest.param({**BASE, "timestamp": True}, "no usable 'timestamp'", id="bool-ts"),
        pytest.param({**BASE, "timestamp": "soon"}, "no usable 'timestamp'", id="text-ts"),
        pytest.param({**BASE, "timestamp": 10**30}, "no usable 'timestamp'", id="huge-ts"),
        pytest.param({**BASE, "timestamp": 5}, "no usable 'timestamp'", id="1970"),
    ],
)
def test_unusable_events(raw: object, reason: str) -> None:
    assert parse_event(raw) == reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("17", 17, id="text"),
        pytest.param(17, 17, id="int"),
        pytest.param("0", None, id="zero"),
        pytest.param("-3", None, id="negative"),
        pytest.param("1e3", None, id="float-text"),
        pytest.param("\u00b2", None, id="superscript"),
        pytest.param(True, None, id="bool"),
        pytest.param(str(2**63), None, id="too-big"),
    ],
)
def test_delivery_id(value: object, expected: int | None) -> None:
    assert parsed(delivery_id=value).delivery_id == expected


def test_batch_errors_and_ignored() -> None:
    with pytest.raises(EventPayloadError, match="not valid JSON"):
        parse_batch(b"[")
    with pytest.raises(EventPayloadError, match="JSON array"):
        parse_batch(b"{}")
    batch = parse_batch(json.dumps([BASE, 1]).encode())
    assert (len(batch.events), batch.ignored) == (1, ("event 1: not a JSON object",))


def test_long_event_id_is_dropped_not_truncated() -> None:
    """A truncated id could collide with another event's; the logical key still dedups."""
    assert parsed(sg_event_id="x" * 201).sg_event_id is None


@pytest.mark.parametrize(
    ("changes", "effect"),
    [
        pytest.param({"event": "bounce", "type": "bounce"}, Effect.BOUNCE, id="hard"),
        pytest.param({"event": "bounce", "type": "Blocked"}, Effect.SOFT_BOUNCE, id="blocked"),
        pytest.param({"event": "bounce"}, Effect.BOUNCE, id="untyped-bounce"),
        pytest.param({"event": "deferred"}, Effect.NONE, id="deferred"),
        pytest.param({"event": "dropped", "reason": "Bounced Address"}, Effect.BOUNCE, id="d-b"),
        pytest.param({"event": "dropped", "reason": "Invalid"}, Effect.BOUNCE, id="d-invalid"),
        pytest.param(
            {"event": "dropped", "reason": "Invalid SMTPAPI header"}, Effect.NONE, id="d-smtpapi"
        ),
        pytest.param(
            {"event": "dropped", "reason": "Unsubscribed Address"}, Effect.UNSUBSCRIBE, id="d-u"
        ),
        pytest.param(
            {"event": "dropped", "reason": "Spam Reporting Address"}, Effect.COMPLAINT, id="d-s"
        ),
        pytest.param({"event": "spamreport"}, Effect.COMPLAINT, id="spam"),
        pytest.param({"event": "unsubscribe"}, Effect.UNSUBSCRIBE, id="unsub"),
        pytest.param({"event": "group_unsubscribe"}, Effect.UNSUBSCRIBE, id="group-unsub"),
        pytest.param({"event": "group_resubscribe"}, Effect.NONE, id="group-resub"),
        pytest.param({"event": "open"}, Effect.NONE, id="open"),
    ],
)
def test_effect_of(changes: dict[str, Any], effect: Effect) -> None:
    assert effect_of(parsed(**changes)) is effect


@pytest.mark.parametrize(
    ("current", "effects", "soft", "expected"),
    [
        pytest.param(S.ACTIVE, [Effect.BOUNCE], 0, S.BOUNCED, id="active-bounce"),
        pytest.param(S.PENDING, [Effect.UNSUBSCRIBE], 0, S.UNSUBSCRIBED, id="pending-unsub"),
        pytest.param(S.ACTIVE, [Effect.SOFT_BOUNCE], 2, None, id="two-soft"),
        pytest.param(S.ACTIVE, [Effect.SOFT_BOUNCE], 3, S.BOUNCED, id="third-soft"),
        pytest.param(S.UNSUBSCRIBED, [Effect.BOUNCE], 0, S.BOUNCED, id="unsub-to-bounced"),
        pytest.param(S.BOUNCED, [Effect.UNSUBSCRIBE], 0, None, id="bounced-stays"),
        pytest.param(S.COMPLAINED, [Effect.BOUNCE], 0, None, id="complained-stays"),
        pytest.param(S.BOUNCED, [Effect.COMPLAINT], 0, S.COMPLAINED, id="bounced-to-complained"),
        pytest.param(
            S.ACTIVE, [Effect.UNSUBSCRIBE, Effect.COMPLAINT], 0, S.COMPLAINED, id="strongest"
        ),
        pytest.param(None, [Effect.UNSUBSCRIBE], 0, S.UNSUBSCRIBED, id="no-subscriber"),
        pytest.param(S.ACTIVE, [], 0, None, id="nothing"),
    ],
)
def test_target_status(
    current: S | None, effects: list[Effect], soft: int, expected: S | None
) -> None:
    assert target_status(current, effects, soft_bounces=soft) == expected


def test_unsubscribe_before_confirmation_does_not_apply() -> None:
    confirmed = datetime(2026, 1, 1, tzinfo=UTC)
    before = confirmed - timedelta(seconds=1)
    assert not applies(Effect.UNSUBSCRIBE, occurred_at=before, confirmed_at=confirmed)
    assert applies(Effect.UNSUBSCRIBE, occurred_at=confirmed, confirmed_at=confirmed)
    assert applies(Effect.BOUNCE, occurred_at=before, confirmed_at=confirmed)
    assert not applies(Effect.NONE, occurred_at=before, confirmed_at=None)


def test_pure_modules_do_no_io_and_sendgrid_stays_in_one_module() -> None:
    """parsing and policy import no I/O library; only signature.py imports sendgrid."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "newsletter"
    forbidden = ("sqlalchemy", "sendgrid", "fastapi", "starlette", "click", "os", "httpx")

    def imports(path: Path) -> set[str]:
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        return names

    for pure in ("events/parsing.py", "events/policy.py"):
        found = imports(package / pure)
        assert not [n for n in found if n.split(".")[0] in forbidden], pure
        assert ".now(" not in (package / pure).read_text()
    users = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if any(n.split(".")[0] == "sendgrid" for n in imports(p))
    )
    assert [u for u in users if not u.startswith("delivery/")] == ["events/signature.py"]


# ---- exact values (each pins one rule of the parser) ------------------------------------------


def test_the_logical_key_is_sha256_of_the_compact_json_of_its_parts() -> None:
    import hashlib

    text = '["MSG.filter-1","delivered",1764000000,"reader@example.org"]'
    assert parsed().logical_key == hashlib.sha256(text.encode()).hexdigest()
    click = '["MSG.filter-1","click",1764000000,"reader@example.org","https://a.example/é"]'
    assert parsed(event="click", url="https://a.example/é").logical_key == (
        hashlib.sha256(click.encode()).hexdigest()
    )
    # a url on another event is not part of its key; nor a url that is not text
    assert parsed(url="https://a.example/").logical_key == parsed().logical_key
    assert parsed(event="click", url=5).logical_key == parsed(event="click").logical_key
    bare = parse_event({"event": "open", "timestamp": 1764000000.9})
    assert isinstance(bare, ParsedEvent)
    assert bare.logical_key == hashlib.sha256(b'["","open",1764000000,""]').hexdigest()
    assert (bare.email, bare.email_hash, bare.sg_message_id, bare.delivery_id) == (
        None,
        None,
        None,
        None,
    )


def test_the_address_hash_is_of_the_normalised_address() -> None:
    from newsletter.addresses import email_hash

    assert parsed(email=" READER@example.org").email_hash == email_hash("reader@example.org")
    assert parsed(email="   ").email is None
    assert parsed(email="   ").email_hash is None
    assert parsed(email=["a@example.org"]).email is None


@pytest.mark.parametrize(
    ("message_id", "expected"),
    [
        ("MSG.filter-1", "MSG"),
        ("MSG", "MSG"),
        (".filter", None),
        ("", None),
        (None, None),
        ("m" * 250 + ".f", "m" * 200),
    ],
)
def test_provider_message_id(message_id: str | None, expected: str | None) -> None:
    assert parsed(sg_message_id=message_id).provider_message_id == expected


def test_text_fields_are_bounded() -> None:
    event = parsed(event="bounce", type="b" * 40, reason="r" * 2100, sg_message_id="m" * 310)
    assert event.bounce_type == "b" * 32
    assert event.reason == "r" * 2000
    assert event.sg_message_id == "m" * 300
    assert parsed(sg_event_id="x" * 200).sg_event_id == "x" * 200
    assert parsed(sg_event_id="").sg_event_id is None
    assert parsed(event="delivered", type="bounce").bounce_type is None
    assert parsed(reason=7).reason is None
    assert parsed(event="e" * 32).event == "e" * 32
    assert parse_event({**BASE, "event": ""}) == "no usable 'event' name"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (946684800, datetime(2000, 1, 1, tzinfo=UTC)),
        (" 1764000000 ", datetime(2025, 11, 24, 16, 0, tzinfo=UTC)),
        (1764000000.75, datetime(2025, 11, 24, 16, 0, tzinfo=UTC)),
    ],
)
def test_usable_timestamps(value: object, expected: datetime) -> None:
    assert parsed(timestamp=value).occurred_at == expected


@pytest.mark.parametrize("value", [946684799, "-5", "1.5e9", [1764000000], float("nan")])
def test_more_unusable_timestamps(value: object) -> None:
    assert parse_event({**BASE, "timestamp": value}) == "no usable 'timestamp'"


def test_the_largest_delivery_id() -> None:
    assert parsed(delivery_id=2**63 - 1).delivery_id == 2**63 - 1
    assert parsed(delivery_id=str(2**63 - 1)).delivery_id == 2**63 - 1
    assert parsed(delivery_id=2**63).delivery_id is None
    assert parsed(delivery_id=1).delivery_id == 1
    assert parsed(delivery_id=3.0).delivery_id is None


def test_personal_data_leaves_the_payload_and_the_address_is_blanked() -> None:
    event = parsed(
        email="Reader@Example.org",
        ip="192.0.2.1",
        useragent="Mozilla",
        reason="550 <READER@example.org>: unknown; reader@example.org",
        nested={"a": ["to reader@example.org", 3, {"b": "Reader@Example.Org!"}]},
        plain="no address here",
        other="someone@example.org",
        number=5,
    )
    assert event.payload == {
        "event": "delivered",
        "timestamp": 1764000000,
        "sg_event_id": "e1",
        "sg_message_id": "MSG.filter-1",
        "reason": "550 <<redacted>>: unknown; <redacted>",
        "nested": {"a": ["to <redacted>", 3, {"b": "<redacted>!"}]},
        "plain": "no address here",
        "other": "someone@example.org",
        "number": 5,
    }


def test_blanking_works_when_lower_case_changes_the_length() -> None:
    # "İ".lower() is two characters: the positions of the folded text do not match
    event = parsed(email="reader@example.org", reason="İ READER@example.org İ")
    assert event.payload["reason"] == "İ <redacted> İ"
    untouched = parsed(email="reader@example.org", reason="İ other@example.org")
    assert untouched.payload["reason"] == "İ other@example.org"


def test_without_an_address_nothing_is_blanked() -> None:
    event = parse_event({"event": "open", "timestamp": 1764000000, "reason": "x@example.org"})
    assert isinstance(event, ParsedEvent)
    assert event.payload == {"event": "open", "timestamp": 1764000000, "reason": "x@example.org"}


def test_unstorable_values_are_made_storable() -> None:
    body = (
        b'[{"event":"open","timestamp":1764000000,"a":"x\\u0000y","b":"\\ud800z",'
        b'"\\u0000k":"\\u00e9","n":NaN,"i":-Infinity,"f":1e400,"g":1.5,"l":["\\u0000"]}]'
    )
    [event] = parse_batch(body).events
    assert dict(event.payload) == {
        "event": "open",
        "timestamp": 1764000000,
        "a": "x\ufffdy",
        "b": "?z",
        "\ufffdk": "é",
        "n": None,
        "i": None,
        "f": None,
        "g": 1.5,
        "l": ["\ufffd"],
    }


def test_batch_ignored_reasons_are_numbered() -> None:
    body = json.dumps([{"event": "open"}, BASE, [], {**BASE, "event": 3}]).encode()
    batch = parse_batch(body)
    assert len(batch.events) == 1
    assert batch.ignored == (
        "event 0: no usable 'timestamp'",
        "event 2: not a JSON object",
        "event 3: no usable 'event' name",
    )
    assert parse_batch(b"[]") == parse_batch(b" [ ] ")
    with pytest.raises(EventPayloadError, match=r"^the body must be a JSON array"):
        parse_batch(b'"\\u0000"')


def test_an_address_the_validator_refuses_is_kept_lower_cased_and_cut() -> None:
    assert parsed(email=" " + "X" * 400 + " ").email == "x" * 320
    assert parsed(email="Not An Address").email == "not an address"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("  ", None, id="blank"),
        pytest.param(" Ann@Example.ORG ", "ann@example.org", id="plain"),
        pytest.param(
            "j\u00fcrgen@XN--BCHER-KVA.example", "j\u00fcrgen@b\u00fccher.example", id="idn"
        ),
    ],
)
def test_event_email_is_the_address_as_the_drain_normalises_it(
    raw: str | None, expected: str | None
) -> None:
    """What ``forget``'s redaction compares an event's ``email`` with."""
    assert event_email(raw) == expected
