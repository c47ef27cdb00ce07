"""Render plans (``newsletter.content.batch``): an email made from its group's plan is
byte for byte the email rendered alone, for every shipped item and generated inputs; and
the dispatcher sends exactly those emails."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from newsletter.app import App
from newsletter.compose import preferences_url, unsubscribe_url
from newsletter.content.batch import (
    RenderPlan,
    group_key,
    make_plan,
    opaque_item,
    reachable_templates,
    recipient_values,
    usable,
)
from newsletter.content.library import ContentLibrary
from newsletter.content.model import NO_EVENT, EventContext, Links, RenderedEmail, SubscriberContext
from newsletter.db import transaction
from newsletter.delivery.personalization import apply_substitutions
from newsletter.dispatch import BatchRenderer, deliver_due
from newsletter.models import Delivery, Subscriber
from newsletter.one_line import one_line
from newsletter.settings import Settings
from newsletter.tokens import make_unsubscribe_token
from tests.conftest import NOW
from tests.factories import add_subscriber, queue_deliveries
from tests.sendgrid_server import SendGridServer

ROOT = Path(__file__).resolve().parents[1]
BASE = "https://news.example"

NAMES: list[str | None] = [
    "nl",
    "Al",
    "O'Brien & <Sons>",
    'Say "hi"',
    "{{ x }}",
    "{ x } }}",
    "",
    None,
    "Bartholomew-Christopher " * 7 + "End" + "e" * 28,  # 199 characters (the column: 200)
    "Jürgen",
    "Zoë 李",
    "&amp;",
    "<b>bold</b>",
    "'",
    "Anna Maria",
    "there",
    "amp;",
    "Reader7",
]
# Values a plan must not take: each recipient is rendered alone.
UNUSABLE = [
    "Anna  Maria",
    "{% if %}",
    " Anna",
    "Anna ",
    "100%",
    "%%nl:first_name%%",
    "a\nb",
    "\ue000nl0&\ue001",
]


@pytest.fixture(scope="module")
def library() -> ContentLibrary:
    return ContentLibrary.load(
        ROOT / "content",
        ROOT / "templates" / "emails",
        postal_address="Backwise Ltd, 1 Test Street, 10115 Berlin",
        sender_name="Backwise",
        base_url=BASE,
    )


def _links(item_transactional: bool, n: int) -> Links:
    token = f"tok{n:04d}.sig-{n}"
    if item_transactional:
        return Links(
            unsubscribe=f"{BASE}/unsubscribe/{token}?d={n}", confirm=f"{BASE}/confirm/c{n}"
        )
    return Links(
        unsubscribe=f"{BASE}/unsubscribe/{token}?d={n}",
        preferences=f"{BASE}/preferences/{token}",
        keep=f"{BASE}/keep/k{n}" if n % 2 else None,
    )


def _planned(
    library: ContentLibrary,
    item_id: str,
    subscriber: SubscriberContext,
    links: Links,
    *,
    witness: SubscriberContext,
    witness_links: Links,
    event: EventContext = NO_EVENT,
) -> RenderedEmail | None:
    """``subscriber``'s email from the plan built for ``witness`` (same group)."""
    assert group_key(item_id, subscriber, links, event) == group_key(
        item_id, witness, witness_links, event
    )
    plan = library.plan(item_id, witness, witness_links, event)
    assert plan is not None, f"{item_id} cannot be planned"
    substitutions = plan.substitutions(recipient_values(subscriber, links))
    return None if substitutions is None else plan.render(substitutions)


def _witness(name: str | None) -> SubscriberContext:
    return SubscriberContext(email="witness@example.org", first_name="Witness" if name else name)


def test_every_shipped_item_can_be_planned(library: ContentLibrary) -> None:
    for item in library.items():
        links = _links(item.transactional, 1)
        assert library.plan(item.id, SubscriberContext("a@example.org", "Ann"), links), item.id


@pytest.mark.parametrize("name", NAMES)
def test_planned_email_equals_rendering_alone_for_every_shipped_item(
    library: ContentLibrary, name: str | None
) -> None:
    for n, item in enumerate(library.items()):
        links = _links(item.transactional, n + 2)
        subscriber = SubscriberContext(email=f"o'reader{n}@example.org", first_name=name)
        planned = _planned(
            library,
            item.id,
            subscriber,
            links,
            witness=_witness(name),
            witness_links=_links(item.transactional, n + 2 + 1000 * (n % 2)),
        )
        assert planned == library.render(item.id, subscriber, links), (item.id, name)


@pytest.mark.parametrize("name", UNUSABLE)
def test_values_a_plan_cannot_take_are_rendered_alone(library: ContentLibrary, name: str) -> None:
    assert not usable(name)
    links = _links(False, 3)
    subscriber = SubscriberContext(email="r@example.org", first_name=name)
    assert (
        _planned(
            library,
            "tips/meet-your-ql",
            subscriber,
            links,
            witness=_witness(name),
            witness_links=links,
        )
        is None
    )
    renderer = BatchRenderer(library)
    for _ in range(2):  # the second time a plan exists for the group
        rendered, plan = renderer.render("tips/meet-your-ql", subscriber, links, NO_EVENT)
        assert plan is None
        assert rendered == library.render("tips/meet-your-ql", subscriber, links)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.one_of(st.none(), st.text(max_size=40)),
    address=st.from_regex(r"[a-z0-9.'+&_-]{1,20}@[a-z0-9-]{1,10}\.example", fullmatch=True),
    item_index=st.integers(min_value=0, max_value=100),
)
def test_generated_inputs_planned_or_alone_are_the_same_email(
    library: ContentLibrary, name: str | None, address: str, item_index: int
) -> None:
    items = library.items()
    item = items[item_index % len(items)]
    links = _links(item.transactional, item_index)
    subscriber = SubscriberContext(email=address, first_name=name)
    alone = library.render(item.id, subscriber, links)
    planned = _planned(
        library,
        item.id,
        subscriber,
        links,
        witness=_witness(name),
        witness_links=_links(item.transactional, item_index + 10),
    )
    if planned is None:
        assert not all(usable(v) for v in recipient_values(subscriber, links).values())
    else:
        assert planned == alone


def test_event_and_attributes_are_part_of_the_group(library: ContentLibrary) -> None:
    links = _links(False, 1)
    one = SubscriberContext("a@example.org", "Ann", attributes={"plan": "gold"})
    other = SubscriberContext("b@example.org", "Bob", attributes={"plan": "free"})
    assert group_key("tips/meet-your-ql", one, links, NO_EVENT) != group_key(
        "tips/meet-your-ql", other, links, NO_EVENT
    )
    event = EventContext(name="purchase", id="1", properties={"sku": "A"})
    assert group_key("tips/meet-your-ql", one, links, NO_EVENT) != group_key(
        "tips/meet-your-ql", one, links, event
    )
    nameless = SubscriberContext("a@example.org", None)
    blank = SubscriberContext("a@example.org", "")
    assert group_key("tips/meet-your-ql", nameless, links, NO_EVENT) != group_key(
        "tips/meet-your-ql", blank, links, NO_EVENT
    )


# ---- the static check ----------------------------------------------------------------


def _opaque(body: str, subject: str = "Hi {{ subscriber.first_name }}") -> bool:
    environment = jinja2.Environment(
        loader=jinja2.DictLoader(
            {
                "item.html": body,
                "base.html": "<p>{% block body %}{% endblock %}</p>",
                "macros.html": "{% macro hi(n) %}Hi {{ n }}{% endmacro %}",
                "greet.html": "Hi {{ subscriber.first_name|upper }}",
            }
        ),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
    )
    return opaque_item(environment, subject, "", ["item.html"])


@pytest.mark.parametrize(
    "body",
    [
        "Hi {{ subscriber.first_name }}",
        'Hi {{ subscriber.first_name or "there" }}',
        "{% if subscriber.first_name %}Hi {{ subscriber.first_name }}{% endif %}",
        "{% if not links.preferences %}none{% else %}{{ links.preferences }}{% endif %}",
        '{{ "yes" if subscriber.first_name else "no" }} {{ subject }} {{ subscriber.tags|join }}',
        '{% extends "base.html" %}{% block body %}{{ links.unsubscribe }}{% endblock %}',
        "{% if subscriber.first_name and links.keep %}{{ links.keep }}{% endif %}",
        "{{ subscriber.attributes.plan|upper }} {{ subscriber.timezone }}",
    ],
)
def test_opaque_uses(body: str) -> None:
    assert _opaque(body)


@pytest.mark.parametrize(
    "body",
    [
        "Hi {{ subscriber.first_name|upper }}",
        "Hi {{ subscriber.first_name ~ '!' }}",
        "{{ subscriber.first_name|length }}",
        "{% if subscriber.first_name == 'Al' %}x{% endif %}",
        "{% if 'a' in subscriber.first_name %}x{% endif %}",
        "{{ subscriber.first_name[0] }}",
        "{{ subscriber['first_name'] }}",
        "{% set n = subscriber.first_name %}{{ n }}",
        "{% set s = subscriber %}{{ s.first_name }}",
        "{% for s in [subscriber] %}{{ s.first_name }}{% endfor %}",
        "{% filter upper %}{{ subscriber.first_name }}{% endfilter %}",
        "{% set x %}{{ links.unsubscribe }}{% endset %}{{ x|upper }}",
        "{% macro m() %}{{ subscriber.first_name }}{% endmacro %}{{ m()|upper }}",
        '{% from "macros.html" import hi %}{{ hi(subscriber.first_name) }}',
        '{% include "greet.html" %}',
        "{{ subject|upper }}",
        "{{ preheader|title }}",
        "{{ (subscriber.first_name or 'there')|title }}",
        "{% if subscriber.first_name is defined %}x{% endif %}",
        '{% extends "base.html" %}{% block body %}{{ self.body()|upper }}{% endblock %}',
        "{{ links.unsubscribe.split('/')[-1] }}",
        "{% include name %}",
        '{{ "x" if links.keep else subscriber.first_name|upper }}',
        '{{ subscriber.first_name|upper if links.keep else "" }}',
        "{{ 'x' if subscriber.first_name|length > 3 }}",
    ],
)
def test_other_uses_make_an_item_unplannable(body: str) -> None:
    assert not _opaque(body)


def test_a_template_named_at_render_time_cannot_be_followed() -> None:
    templates = {
        "dyn.html": "{% include name %}",
        "a.html": "{% include 'b.html' %}{% include 'b.html' %}",
        "b.html": "b",
    }
    environment = jinja2.Environment(loader=jinja2.DictLoader(templates), autoescape=True)
    assert list(reachable_templates(environment, ["a.html"])) == ["a.html", "b.html"]
    with pytest.raises(LookupError, match="names a template at render time"):
        list(reachable_templates(environment, ["dyn.html"]))


def test_a_subject_that_transforms_the_name_is_unplannable() -> None:
    assert not _opaque("Hi", subject="Hi {{ subscriber.first_name|upper }}")


class _WrongPlanLibrary:
    """A library whose plan is wrong (as a bug in the static check would make it)."""

    def __init__(self, real: ContentLibrary) -> None:
        self.real = real
        self.renders = 0

    def render(self, *args: Any) -> RenderedEmail:
        self.renders += 1
        return self.real.render(*args)

    def plan(self, *args: Any) -> RenderPlan | None:
        plan = self.real.plan(*args)
        assert plan is not None
        return RenderPlan(
            plan.item_id,
            plan.subject.upper(),
            plan.preheader,
            plan.html,
            plan.text,
            plan.transactional,
            plan.tags,
        )


def test_a_plan_that_differs_from_its_witness_is_never_used(library: ContentLibrary) -> None:
    wrong = _WrongPlanLibrary(library)
    renderer = BatchRenderer(wrong)  # type: ignore[arg-type]
    for n in range(5):
        subscriber = SubscriberContext(f"r{n}@example.org", f"Reader{n}")
        links = _links(False, n)
        rendered, plan = renderer.render("tips/meet-your-ql", subscriber, links, NO_EVENT)
        assert plan is None
        assert rendered == library.render("tips/meet-your-ql", subscriber, links)
    assert wrong.renders == 5


def test_a_group_renders_once_alone_then_from_its_plan(library: ContentLibrary) -> None:
    counting = _CountingLibrary(library)
    renderer = BatchRenderer(counting)  # type: ignore[arg-type]
    for n in range(10):
        subscriber = SubscriberContext(f"r{n}@example.org", f"Reader{n}")
        links = _links(False, 2 * n)  # one group: every link present or absent alike
        rendered, plan = renderer.render("tips/meet-your-ql", subscriber, links, NO_EVENT)
        assert (plan is None) == (n == 0)
        assert rendered == library.render("tips/meet-your-ql", subscriber, links)
    assert (counting.renders, counting.plans) == (1, 1)


class _CountingLibrary:
    def __init__(self, real: ContentLibrary) -> None:
        self.real = real
        self.renders = 0
        self.plans = 0

    def render(self, *args: Any) -> RenderedEmail:
        self.renders += 1
        return self.real.render(*args)

    def plan(self, *args: Any) -> RenderPlan | None:
        self.plans += 1
        return self.real.plan(*args)


# ---- through the dispatcher ------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[SendGridServer]:
    with SendGridServer() as running:
        yield running


def _queue(app: App, names: list[str | None], item_id: str) -> None:
    with transaction(app.sessions) as session:
        ids = [
            add_subscriber(session, f"reader{n}@example.org", first_name=name).id
            for n, name in enumerate(names)
        ]
        queue_deliveries(session, ids, item_id=item_id)


def _alone(app: App) -> dict[str, RenderedEmail]:
    """Each queued email rendered alone, by recipient address."""
    keys = app.settings.secret_keys
    out: dict[str, RenderedEmail] = {}
    with app.sessions() as session:
        for delivery, subscriber in session.execute(
            select(Delivery, Subscriber).join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        ):
            token = make_unsubscribe_token(subscriber.public_id, keys=keys)
            links = Links(
                unsubscribe=unsubscribe_url(BASE, token, delivery_id=delivery.id),
                preferences=preferences_url(BASE, token),
            )
            recipient = SubscriberContext(subscriber.email, subscriber.first_name)
            out[subscriber.email] = app.library.render(delivery.item_id, recipient, links)
    return out


# "=?" and a decomposed "é": values a plan takes whose subject one_line then changes
# (defused, NFC): the skeleton must be refused for them (the subject check).
DISPATCH_NAMES = [*NAMES, *UNUSABLE[:4], "Reader1", "Reader2", "Ann=?x", "Rene\u0301e"]


def test_sendgrid_batch_gives_every_recipient_the_email_rendered_alone(
    make_settings: Callable[..., Settings], server: SendGridServer
) -> None:
    app = App(
        make_settings(
            mail_backend="sendgrid", sendgrid_api_key="SG.key", sendgrid_api_url=server.url
        )
    )
    try:
        _queue(app, DISPATCH_NAMES, "tips/meet-your-ql")
        expected = _alone(app)
        deliver_due(app, now=NOW)
        with app.sessions() as session:
            assert set(session.scalars(select(Delivery.status))) == {"sent"}
        seen: set[str] = set()
        batched = 0
        for body in server.recorded().bodies:
            contents = {c["type"]: c["value"] for c in body["content"]}
            for personalization in body["personalizations"]:
                address = personalization["to"][0]["email"]
                subs = personalization.get("substitutions", {})
                batched += bool(subs)
                alone = expected[address]
                assert _sendgrid_applied(body["subject"], subs) == one_line(alone.subject)
                assert _sendgrid_applied(contents["text/html"], subs) == alone.html
                assert _sendgrid_applied(contents["text/plain"], subs) == alone.text
                seen.add(address)
        assert seen == set(expected)
        assert batched >= len(NAMES) - 2  # the usable names share one request
    finally:
        app.close()


def _sendgrid_applied(template: str, substitutions: dict[str, str]) -> str:
    """As SendGrid applies substitutions: one tag after another."""
    for tag, value in substitutions.items():
        template = template.replace(tag, value)
    return template


def test_outbox_files_hold_the_email_rendered_alone(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    app = App(make_settings(mail_backend="outbox"))
    try:
        _queue(app, DISPATCH_NAMES, "tutorials/first-session")
        expected = _alone(app)
        deliver_due(app, now=NOW)
        files = sorted((tmp_path / "outbox").glob("*.eml"))
        assert len(files) == len(expected)
        for path in files:
            parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            address = parsed["To"].addresses[0].addr_spec
            alone = expected[address]
            assert parsed["Subject"] == one_line(alone.subject)
            text = parsed.get_body(("plain",))
            html = parsed.get_body(("html",))
            assert text is not None
            assert html is not None
            assert text.get_content().replace("\r\n", "\n") == _with_line_end(alone.text)
            assert html.get_content().replace("\r\n", "\n") == _with_line_end(alone.html)
    finally:
        app.close()


def _with_line_end(part: str) -> str:
    """A MIME part ends with a line end (``set_content``, ``mime.build_bytes``)."""
    return part if part.endswith("\n") else part + "\n"


def test_tags_for_a_value_escaped_twice_apply() -> None:
    assert apply_substitutions("%%nl:first_name:hh%%", {"%%nl:first_name:hh%%": "x"}) == "x"


def test_the_group_key_holds_every_field_of_both_contexts() -> None:
    """A field added to ``SubscriberContext`` or ``Links`` splits groups by its value."""
    base = SubscriberContext("a@example.org", "Ann", timezone="UTC", tags=("a",))
    links = Links(unsubscribe="u")
    key = group_key("x", base, links, NO_EVENT)
    assert group_key("x", replace(base, timezone="Europe/Berlin"), links, NO_EVENT) != key
    assert group_key("x", replace(base, tags=("b",)), links, NO_EVENT) != key
    assert group_key("x", base, replace(links, web_version="w"), NO_EVENT) != key
    assert group_key("x", replace(base, first_name="Bob", email="b@x.org"), links, NO_EVENT) == key
    assert group_key("x", base, replace(links, unsubscribe="v"), NO_EVENT) == key
    assert group_key("x", base, replace(links, unsubscribe=""), NO_EVENT) != key
    assert group_key("y", base, links, NO_EVENT) != key
    numbers = SubscriberContext("a@example.org", "Ann", attributes={"n": 1})
    booleans = SubscriberContext("a@example.org", "Ann", attributes={"n": True})
    assert group_key("x", numbers, links, NO_EVENT) != group_key("x", booleans, links, NO_EVENT)


@pytest.mark.parametrize(
    "html",
    [
        "<p>\ue000nl1&\ue001</p>",  # a sentinel no value was given (content that holds one)
        "<p>\ue000nl0&amp;amp;amp;\ue001</p>",  # escaped three times: no tag for it
        "<p>\ue000NL0&\ue001</p>",  # changed by the template
        "<p>%%nl:first_name%% \ue000nl0&\ue001</p>",  # "%%" in the content
        "<p>\ue000 half a sentinel</p>",
        "<p>the other half \ue001</p>",
    ],
)
def test_a_probe_with_sentinels_substitution_cannot_reproduce_gives_no_plan(html: str) -> None:
    probe = RenderedEmail("x", "subject", "preheader", html, "text")
    assert make_plan(probe, ("first_name",)) is None


def test_a_probe_gives_tags_by_how_often_each_value_was_escaped() -> None:
    probe = RenderedEmail(
        "x", "Hi \ue000nl0&\ue001", "", "<p>\ue000nl0&amp;\ue001 \ue000nl0&amp;amp;\ue001</p>", ""
    )
    plan = make_plan(probe, ("first_name",))
    assert plan is not None
    assert (plan.subject, plan.html) == (
        "Hi %%nl:first_name%%",
        "<p>%%nl:first_name:h%% %%nl:first_name:hh%%</p>",
    )
    assert plan.render(plan.substitutions({"first_name": "O'B"}) or {}).html == (
        "<p>O&#39;B O&amp;#39;B</p>"
    )
