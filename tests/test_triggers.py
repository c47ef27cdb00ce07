"""Triggers in the sequence file (pure parsing), ``sequence enroll/exit``, on_tag triggers
through the API and import, and ``sequence simulate --event/--tag``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.app import App
from newsletter.cli import main
from newsletter.content.model import Triggers
from newsletter.content.sequences import parse_sequence
from newsletter.db import transaction
from newsletter.errors import ContentError
from newsletter.models import Enrollment
from newsletter.settings import Settings, load_settings
from tests.api_support import Clock, bearer, keys_and_client
from tests.cli_output import after_context
from tests.conftest import NOW
from tests.factories import add_subscriber
from tests.test_content_loading import ITEMS

BASE = "name: s\nsend_window: '08:00-11:00'\nsteps:\n  - send: tips/a\n    after: 0d\n"


def parse(extra: str) -> Triggers:
    return parse_sequence(extra + BASE, "s.yaml", "s", ITEMS).triggers


@pytest.mark.parametrize(
    ("text", "expected", "enroll"),
    [
        ("", Triggers(), "manual"),
        ("enroll: manual\n", Triggers(), "manual"),
        ("enroll: on_confirm\n", Triggers(on_confirm=True), "on_confirm"),
        (
            "enroll:\n  on_confirm: true\n  on_tag: Customers\n  on_event: [purchase, refund]\n",
            Triggers(True, ("customers",), ("purchase", "refund")),
            "on_confirm, on_tag: customers, on_event: purchase, on_event: refund",
        ),
        (
            "enroll: {on_event: purchase}\nexit: {on_tag: [vip, churned], on_event: refund}\n"
            "reenroll: true\n",
            Triggers(False, (), ("purchase",), ("vip", "churned"), ("refund",), True),
            "on_event: purchase",
        ),
    ],
    ids=["default", "manual", "word", "mapping", "exit-and-reenroll"],
)
def test_triggers_are_read(text: str, expected: Triggers, enroll: str) -> None:
    sequence = parse_sequence(text + BASE, "s.yaml", "s", ITEMS)
    assert sequence.triggers == expected
    assert sequence.enroll == enroll


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("enroll: always\n", ":1: enroll must be on_confirm, manual or a mapping"),
        ("enroll: {on_signup: true}\n", ":1: unknown key 'on_signup' in enroll"),
        ("enroll: {on_confirm: false}\n", ":1: enroll names no trigger"),
        ("enroll: {on_confirm: yes please}\n", ":1: enroll.on_confirm must be true or false"),
        ("enroll: {on_event: Big Purchase}\n", ":1: enroll.on_event: 'Big Purchase' is not"),
        ("enroll: {on_tag: []}\n", ":1: enroll.on_tag is an empty list"),
        ("enroll: {on_tag: 'a,b'}\n", ":1: enroll.on_tag: 'a,b' is not a tag"),
        ("exit: purchase\n", ":1: exit must be a mapping"),
        ("exit: {on_unsubscribe: true}\n", ":1: unknown key 'on_unsubscribe' in exit"),
        ("reenroll: sometimes\n", ":1: reenroll must be true or false"),
        (
            "enroll: {on_event: purchase}\nexit: {on_event: purchase}\n",
            ":2: the sequence enrolls and exits on the event 'purchase'",
        ),
        (
            "enroll: {on_tag: vip}\nexit: {on_tag: VIP}\n",
            ":2: the sequence enrolls and exits on the tag 'vip'",
        ),
    ],
)
def test_bad_triggers_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ContentError) as caught:
        parse(text)
    assert str(caught.value).startswith("s.yaml" + message), str(caught.value)


# ---- sequence enroll / exit ------------------------------------------------------------


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    application = App(settings)
    yield application
    application.close()


def run(env: dict[str, Any], *args: str) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def enrollments(app: App) -> dict[tuple[str, str], str]:
    from newsletter.models import Subscriber

    with app.sessions() as session:
        rows = session.execute(
            select(Subscriber.email, Enrollment.sequence, Enrollment.status).join(
                Subscriber, Subscriber.id == Enrollment.subscriber_id
            )
        ).all()
    return {(email, seq): status for email, seq, status in rows}


def test_sequence_enroll_and_exit(cli_env: dict[str, Any]) -> None:
    app = App(load_settings(cli_env))
    try:
        with transaction(app.sessions) as session:
            add_subscriber(session, "a@example.org")
            add_subscriber(session, "p@example.org", status="pending")
        result = run(
            cli_env,
            "sequence",
            "enroll",
            "first-week-with-your-tool",
            "a@example.org",
            "p@example.org",
        )
        assert result.exit_code == 0, result.output
        assert result.stdout == "a@example.org: enrolled\np@example.org: not active (pending)\n"
        again = run(cli_env, "sequence", "enroll", "first-week-with-your-tool", "A@example.org")
        assert again.stdout == "a@example.org: already enrolled\n"
        left = run(cli_env, "sequence", "exit", "first-week-with-your-tool", "a@example.org")
        assert left.stdout == "a@example.org: exited\n"
        twice = run(cli_env, "sequence", "exit", "first-week-with-your-tool", "a@example.org")
        assert twice.stdout == "a@example.org: not enrolled\n"
        # no reenroll: true, so enrolling again after the exit is a no-op
        back = run(cli_env, "sequence", "enroll", "first-week-with-your-tool", "a@example.org")
        assert back.stdout == "a@example.org: already enrolled\n"
        assert enrollments(app) == {("a@example.org", "first-week-with-your-tool"): "exited"}
        unknown = run(cli_env, "sequence", "enroll", "nope", "a@example.org")
        assert unknown.exit_code == 1
        assert after_context(unknown.stderr).startswith("Error: no sequence named 'nope'")
        nobody = run(cli_env, "sequence", "exit", "back-pain-basics", "x@example.org")
        assert nobody.exit_code == 1
        assert "no subscriber with address 'x@example.org'" in nobody.stderr
    finally:
        app.close()


REENROLL = """name: winback
description: Come back.
enroll:
  on_tag: lapsed
exit:
  on_tag: returned
reenroll: true
send_window: "08:00-11:00"
steps:
  - send: tips/meet-your-ql
    after: 1d
"""


def test_on_tag_triggers_through_the_api_and_reenroll(make_settings: Any, tmp_path: Path) -> None:
    import shutil

    from tests.conftest import ROOT

    content = tmp_path / "content"
    shutil.copytree(ROOT / "content", content)
    (content / "sequences" / "winback.yaml").write_text(REENROLL)
    application = App(make_settings(content_dir=str(content)))
    try:
        client: TestClient
        client, write, _read = keys_and_client(application, Clock(NOW))
        with transaction(application.sessions) as session:
            add_subscriber(session, "a@example.org")

        def tags(add: list[str], remove: list[str] | None = None) -> Any:
            return client.post(
                "/api/v1/subscribers/a@example.org/tags",
                headers=bearer(write),
                json={"add": add, "remove": remove or []},
            ).json()

        assert tags(["lapsed"])["enrolled"] == ["winback"]
        assert tags(["returned"])["exited"] == ["winback"]
        assert enrollments(application)[("a@example.org", "winback")] == "exited"
        # a tag already held is not "added" again: nothing happens
        assert tags(["lapsed"])["enrolled"] == []
        # reenroll: true -> the tag added anew restarts the exited enrollment
        tags([], ["lapsed", "returned"])
        assert tags(["lapsed"])["enrolled"] == ["winback"]
        with application.sessions() as session:
            row = session.scalars(select(Enrollment)).one()
        assert (row.status, row.position, row.last_item_id) == ("active", 0, None)
    finally:
        application.close()


# ---- simulate ----------------------------------------------------------------------------


def test_simulate_with_a_purchase_event(cli_env: dict[str, Any]) -> None:
    result = run(
        cli_env,
        "sequence",
        "simulate",
        "back-pain-basics",
        "--signup",
        "2026-12-01T09:30",
        "--timezone",
        "UTC",
        "--event",
        "purchase@+5d",
        "--rotations",
        "0",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["sequence"], r["item"]) for r in rows] == [
        ("back-pain-basics", "system/welcome"),
        ("back-pain-basics", "tips/meet-your-ql"),
        ("first-week-with-your-tool", "system/purchase-welcome"),
        ("first-week-with-your-tool", "tutorials/first-session"),
        ("first-week-with-your-tool", "tutorials/at-your-desk"),
        ("first-week-with-your-tool", "tutorials/glute-routine"),
        ("first-week-with-your-tool", "tutorials/ql-release"),
    ]
    assert rows[2]["utc"] == "2026-12-06T09:30Z"
    table = run(
        cli_env,
        "sequence",
        "simulate",
        "back-pain-basics",
        "--signup",
        "2026-12-01T09:30",
        "--timezone",
        "UTC",
        "--event",
        "purchase@2026-12-06T09:30",
        "--tag",
        "customers@+2d",
        "--rotations",
        "0",
    )
    lines = table.stdout.splitlines()
    assert lines[:4] == [
        "back-pain-basics for a subscriber confirming 2026-12-01 09:30 UTC in UTC",
        "back-pain-basics starts 2026-12-01 09:30 UTC (signup)",
        "back-pain-basics exits 2026-12-06 09:30 UTC on event purchase: 7 emails not sent",
        "first-week-with-your-tool starts 2026-12-06 09:30 UTC (event purchase)",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--event", "purchase"), "'purchase': write NAME@WHEN"),
        (("--event", "purchase@+soon"), "bad delay 'soon'"),
        (("--tag", "vip@yesterday"), "'yesterday' is neither +<delay>"),
    ],
)
def test_simulate_refuses_bad_happenings(
    cli_env: dict[str, Any], args: tuple[str, ...], message: str
) -> None:
    result = run(cli_env, "sequence", "simulate", "back-pain-basics", *args)
    assert result.exit_code == 2
    assert message in result.stderr


ON_TAG = """name: customers-only
description: For tagged buyers.
enroll:
  on_tag: customers
send_window: "08:00-11:00"
steps:
  - send: tips/meet-your-ql
    after: 1d
"""


def test_import_confirmed_with_a_tag_fires_on_tag(cli_env: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    from tests.conftest import ROOT

    content = tmp_path / "content"
    shutil.copytree(ROOT / "content", content)
    (content / "sequences" / "customers-only.yaml").write_text(ON_TAG)
    env = {**cli_env, "NEWSLETTER_CONTENT_DIR": str(content)}
    source = tmp_path / "list.csv"
    source.write_text("email,tags\na@example.org,customers\nb@example.org,\n")
    result = run(env, "subscribers", "import", str(source), "--confirmed")
    assert result.exit_code == 0, result.output
    app = App(load_settings(env))
    try:
        assert enrollments(app) == {
            ("a@example.org", "back-pain-basics"): "active",
            ("a@example.org", "customers-only"): "active",
            ("b@example.org", "back-pain-basics"): "active",
        }
    finally:
        app.close()
