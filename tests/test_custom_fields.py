"""Custom fields: limits, import columns, templates, ``content check``, ``--where`` in SQL on
both databases, and SendGrid batching of attribute values."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from newsletter import attributes
from newsletter.app import App
from newsletter.campaigns.audience import count_audience
from newsletter.campaigns.drafts import create_campaign
from newsletter.campaigns.schedule import Segment, make_segment
from newsletter.cli import main
from newsletter.compose import Sender, compose
from newsletter.content.library import ContentLibrary
from newsletter.content.model import Links, SubscriberContext
from newsletter.db import transaction
from newsletter.delivery.personalization import apply_substitutions, group_messages
from newsletter.errors import CampaignError, InvalidAttributes
from newsletter.models import Campaign, Subscriber
from newsletter.settings import Settings, load_settings
from tests.conftest import NOW
from tests.content_fixtures import build_library, use_library
from tests.factories import add_subscriber

# ---- limits (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        {"plan": "pro", "seats": 3, "ratio": 0.5, "vip": True, "_x": ""},
        {f"f{n}": n for n in range(50)},
        {"a" * 40: "x" * 500},
    ],
    ids=["kinds", "fifty-fields", "longest"],
)
def test_valid_attributes(raw: dict[str, Any]) -> None:
    assert attributes.validate(raw) == raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"9plan": 1}, "bad attribute name"),
        ({"a" * 41: 1}, "bad attribute name"),
        ({"plan-x": 1}, "bad attribute name"),
        ({"a": "x" * 501}, "is 501 characters long; at most 500"),
        ({"a": [1]}, "must be a string, a number or true/false, got list"),
        ({"a": None}, "got NoneType"),
        ({"a": float("nan")}, "not a finite number"),
        ({"a": 2**60}, "too large"),
        ({f"f{n}": n for n in range(51)}, "51 attributes; at most 50"),
        ({f"f{n}": "x" * 400 for n in range(25)}, "bytes as JSON; at most 8192"),
        ([1], "must be a JSON object"),
    ],
    ids=lambda v: str(v)[:20],
)
def test_invalid_attributes(raw: Any, message: str) -> None:
    with pytest.raises(InvalidAttributes, match=message.replace("(", r"\(")):
        attributes.validate(raw)


def test_merge_removes_with_none_and_checks_the_result() -> None:
    assert attributes.merge({"a": 1, "b": 2}, {"a": None, "c": "x"}) == {"b": 2, "c": "x"}
    with pytest.raises(InvalidAttributes):
        attributes.merge({f"f{n}": n for n in range(50)}, {"one_more": 1})


@pytest.mark.parametrize(
    ("value", "text"), [(True, "true"), (False, "false"), (3, "3"), (1.5, "1.5"), ("DE", "DE")]
)
def test_text_of(value: object, text: str) -> None:
    assert attributes.text_of(value) == text


# ---- import ----------------------------------------------------------------------------


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_import_takes_extra_columns_as_attributes(cli_env: dict[str, Any], tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "list.csv",
        [
            ["email", "first_name", "plan", "country"],
            ["a@example.org", "A", "pro", "DE"],
            ["b@example.org", "B", "", "FR"],
            ["c@example.org", "C", "x" * 501, "FR"],
        ],
    )
    result = CliRunner().invoke(
        main, ["subscribers", "import", str(source), "--confirmed"], env=cli_env
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "taken: 2, skipped: 1"
    assert lines[1] == (
        "  line 4: c@example.org: attribute 'plan' is 501 characters long; at most 500"
    )
    app = App(load_settings(cli_env))
    try:
        with app.sessions() as session:
            found = dict(session.execute(select(Subscriber.email, Subscriber.attributes)).all())
    finally:
        app.close()
    assert found == {
        "a@example.org": {"plan": "pro", "country": "DE"},
        "b@example.org": {"country": "FR"},
    }


def test_import_refuses_a_column_that_cannot_be_a_field(
    cli_env: dict[str, Any], tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "list.csv", [["email", "order total"], ["a@example.org", "3"]])
    result = CliRunner().invoke(main, ["subscribers", "import", str(source)], env=cli_env)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("Error: bad column name 'order total'")
    assert result.stderr.endswith("extra columns become custom fields, so rename the column\n")


# ---- templates and content check ------------------------------------------------------

PLAN_TIP = """---
subject: "Your {{ subscriber.attributes.plan }} plan"
preheader: A tip for your plan.
attributes: [plan]
---
Hi! On the {{ subscriber.attributes.plan }} plan, in {{ subscriber.attributes.country |
default("your country") }}.
"""
UNDECLARED = """---
subject: "Hello"
preheader: A tip.
---
Hi {{ subscriber.attributes.plan }}.
"""


def test_templates_see_attributes(tmp_path: Path) -> None:
    root = build_library(tmp_path, {"content/tips/plan.md": PLAN_TIP})
    library = ContentLibrary.load(
        root / "content",
        root / "templates" / "emails",
        postal_address="1 Main St",
        sender_name="Shop",
        base_url="https://shop.example",
    )
    links = Links(unsubscribe="https://shop.example/unsubscribe/t")
    email = library.render(
        "tips/plan",
        SubscriberContext(email="a@example.org", attributes={"plan": "pro", "country": "DE"}),
        links,
    )
    assert email.subject == "Your pro plan"
    assert "On the pro plan, in DE." in email.text
    fallback = library.render(
        "tips/plan", SubscriberContext(email="a@example.org", attributes={"plan": "pro"}), links
    )
    assert "in your country." in fallback.text


@pytest.fixture
def cli() -> click.Group:
    return main


def test_content_check_renders_with_declared_attributes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = build_library(tmp_path, {"content/tips/plan.md": PLAN_TIP})
    use_library(monkeypatch, root)
    result = CliRunner().invoke(main, ["content", "check"])
    assert result.exit_code == 0, result.output


def test_content_check_reports_an_undeclared_attribute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = build_library(tmp_path, {"content/tips/plain.md": UNDECLARED})
    use_library(monkeypatch, root)
    result = CliRunner().invoke(main, ["content", "check"])
    assert result.exit_code == 1
    assert "content/tips/plain.md:5: tips/plain: undefined variable" in result.output
    assert "subscriber.attributes.<name>" in result.output


def test_front_matter_attributes_must_be_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = PLAN_TIP.replace("attributes: [plan]", "attributes: [plan, 'two words']")
    root = build_library(tmp_path, {"content/tips/plan.md": bad})
    use_library(monkeypatch, root)
    result = CliRunner().invoke(main, ["content", "check"])
    assert result.exit_code == 1
    assert "content/tips/plan.md:4: attributes must list names" in result.output


# ---- campaign --where (SQL, SQLite and PostgreSQL) --------------------------------------


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    application = App(settings)
    yield application
    application.close()


def seed(app: App) -> None:
    with transaction(app.sessions) as session:
        add_subscriber(session, "pro-de@example.org", attributes={"plan": "pro", "country": "DE"})
        add_subscriber(session, "pro-fr@example.org", attributes={"plan": "pro", "country": "FR"})
        add_subscriber(session, "free-de@example.org", attributes={"plan": "free", "country": "DE"})
        add_subscriber(session, "none@example.org", attributes={})
        add_subscriber(session, "seats@example.org", attributes={"seats": 3, "vip": True})
        add_subscriber(
            session, "quote@example.org", attributes={"plan": "pro'; --", "country": "DE"}
        )
        add_subscriber(
            session, "gone@example.org", status="unsubscribed", attributes={"plan": "pro"}
        )


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (("plan=pro",), 2),
        (("plan=pro", "country=DE"), 1),
        (("country=DE",), 3),
        (("seats=3",), 1),
        (("vip=true",), 1),
        (("vip=True",), 0),
        (("plan=pro'; --",), 1),
        (("plan=",), 0),
        (("missing=x",), 0),
    ],
)
def test_where_counts_in_sql(app: App, where: tuple[str, ...], expected: int) -> None:
    seed(app)
    segment = make_segment((), (), where)
    with app.sessions() as session:
        assert count_audience(session, segment) == expected
        rows = session.execute(select(Subscriber.tags, Subscriber.attributes, Subscriber.status))
        in_python = sum(
            1 for tags, attrs, status in rows if status == "active" and segment.matches(tags, attrs)
        )
    assert in_python == expected


def test_campaign_create_where_is_stored_and_shown(cli_env: dict[str, Any], app: App) -> None:
    seed(app)
    result = CliRunner().invoke(
        main,
        [
            "campaign",
            "create",
            "campaigns/seven-day-reset",
            "--where",
            "plan=pro",
            "--where",
            "country=DE",
            "--now",
            NOW.isoformat(),
        ],
        env=cli_env,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        "created draft 'seven-day-reset': campaigns/seven-day-reset to 1 active subscribers "
        "(where plan=pro and country=DE)"
    )
    with app.sessions() as session:
        stored = session.scalars(select(Campaign.where_attributes)).one()
    assert stored == {"plan": "pro", "country": "DE"}


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (("plan",), "bad --where 'plan': write NAME=VALUE"),
        (("two words=x",), "bad --where 'two words=x'"),
        (("plan=a", "plan=b"), "--where names 'plan' twice"),
    ],
)
def test_bad_where_is_refused(app: App, where: tuple[str, ...], message: str) -> None:
    seed(app)
    with pytest.raises(CampaignError, match=message):
        create_campaign(
            app,
            "campaigns/seven-day-reset",
            name=None,
            include=(),
            exclude=(),
            where=where,
            pause_drips=False,
            now=NOW,
        )
    with app.sessions() as session:
        assert session.scalars(select(Campaign)).all() == []


def test_segment_describe_with_where() -> None:
    assert Segment(("a",), (), (("plan", "pro"),)).describe() == "tags: any of a; where plan=pro"


# ---- SendGrid batching ------------------------------------------------------------------


def test_attribute_values_are_per_recipient_substitutions(tmp_path: Path) -> None:
    root = build_library(tmp_path, {"content/tips/plan.md": PLAN_TIP})
    library = ContentLibrary.load(
        root / "content",
        root / "templates" / "emails",
        postal_address="1 Main St",
        sender_name="Shop",
        base_url="https://shop.example",
    )
    sender = Sender("tips@shop.example", "Shop", None, "https://shop.example")
    messages = []
    # Plans of equal length: the text part underlines the subject, so a longer value
    # changes the skeleton and that email would (correctly) go out alone.
    for index, (plan, country) in enumerate([("Premium", "Germany"), ("Starter", "Finland")], 1):
        recipient = SubscriberContext(
            email=f"r{index}@example.org", attributes={"plan": plan, "country": country}
        )
        links = Links(unsubscribe=f"https://shop.example/unsubscribe/tok{index:04d}")
        rendered = library.render("tips/plan", recipient, links)
        messages.append(
            compose(
                rendered,
                delivery_id=index,
                attempt=1,
                recipient=recipient,
                links=links,
                sender=sender,
                nonce=f"{index:016x}",
                now=NOW,
            )
        )
    groups = group_messages(messages)
    assert len(groups) == 1
    assert groups[0].batched
    group = groups[0]
    assert "Starter" not in group.subject
    assert "Premium" not in group.subject
    for member in group.recipients:
        values = dict(member.substitutions)
        assert apply_substitutions(group.subject, values) == member.message.subject
        assert apply_substitutions(group.text, values) == member.message.text
        assert apply_substitutions(group.html, values) == member.message.html
