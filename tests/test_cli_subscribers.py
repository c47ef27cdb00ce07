"""``newsletter subscribers ...`` through click's CliRunner, with exact output."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.cli import main
from newsletter.models import Delivery, Enrollment, Subscriber, Suppression
from newsletter.settings import load_settings
from newsletter.subscriptions import unsubscribe_by_token
from newsletter.tokens import make_unsubscribe_token
from tests.cli_output import after_context

NOW = "2026-11-24T09:00:00+00:00"


@pytest.fixture
def run(cli_env: dict[str, Any]) -> Any:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), env=cli_env, input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def app(cli_env: dict[str, Any]) -> Any:
    application = App(load_settings(cli_env))
    yield application
    application.close()


def test_add_confirmed_then_list_show_export(run: Any, app: App) -> None:
    result = run(
        "subscribers",
        "add",
        "Ann@Example.org",
        "--name",
        "Ann",
        "--timezone",
        "Europe/Paris",
        "--tag",
        "vip",
        "--confirmed",
        "--now",
        NOW,
    )
    assert result.exit_code == 0
    assert result.stdout == "ann@example.org: added and active\n"
    listed = run("subscribers", "list", "--format", "json")
    assert json.loads(listed.stdout) == [
        {
            "email": "ann@example.org",
            "first_name": "Ann",
            "status": "active",
            "timezone": "Europe/Paris",
            "tags": ["vip"],
            "created_at": "2026-11-24T09:00:00+00:00",
        }
    ]
    as_csv = run("subscribers", "list", "--format", "csv", "--status", "active")
    assert as_csv.stdout.splitlines() == [
        "email,first_name,status,timezone,tags,created_at",
        "ann@example.org,Ann,active,Europe/Paris,vip,2026-11-24T09:00:00+00:00",
    ]
    table = run("subscribers", "list")
    assert "ann@example.org" in table.stdout
    assert "1 subscribers" in table.stdout
    shown = run("subscribers", "show", "ann@example.org")
    assert shown.stdout.splitlines()[0] == "ann@example.org  active  (Europe/Paris)"
    assert "back-pain-basics: active" in shown.stdout
    exported = json.loads(run("subscribers", "export", "ann@example.org").stdout)
    assert exported["consent"][0]["kind"] == "imported"
    assert exported["enrollments"][0]["sequence"] == "back-pain-basics"


def test_show_and_export_number_the_next_step_from_1(run: Any, app: App) -> None:
    """Before the welcome goes out the next step is 1; once it is planned, 2 (never 0-based)."""
    run("subscribers", "add", "ann@example.org", "--confirmed", "--now", NOW)
    before = json.loads(run("subscribers", "export", "ann@example.org").stdout)
    assert [(e["sequence"], e["next_step"]) for e in before["enrollments"]] == [
        ("back-pain-basics", 1)
    ]
    assert "position" not in before["enrollments"][0]
    assert run("tick", "--now", NOW).exit_code == 0
    after = json.loads(run("subscribers", "export", "ann@example.org").stdout)
    assert [e["next_step"] for e in after["enrollments"]] == [2]
    with app.sessions() as session:
        assert session.scalars(select(Enrollment.position)).one() == 1  # stored 0-based
    shown = run("subscribers", "show", "ann@example.org").stdout.splitlines()
    assert [line for line in shown if "back-pain-basics" in line] == [
        "  back-pain-basics: active, next step 2, due -"
    ]


def test_add_without_confirmed_sends_the_double_opt_in(run: Any, app: App) -> None:
    result = run("subscribers", "add", "bo@example.org", "--now", NOW)
    assert result.stdout == "bo@example.org: added; confirmation email queued\n"
    with app.sessions() as session:
        assert session.scalars(select(Subscriber.status)).one() == "pending"
        assert session.scalars(select(Delivery.kind)).one() == "confirmation"


def test_errors_are_one_line_with_exit_code_1(run: Any) -> None:
    bad = run("subscribers", "add", "not-an-email")
    assert bad.exit_code == 1
    assert after_context(bad.stderr).startswith("Error: invalid email address 'not-an-email'")
    missing = run("subscribers", "show", "nobody@example.org")
    assert missing.exit_code == 1
    assert after_context(missing.stderr) == (
        "Error: no subscriber with address 'nobody@example.org'; check the spelling or run "
        "`newsletter subscribers list`\n"
    )


def test_unsubscribe_and_forget(run: Any, app: App) -> None:
    run("subscribers", "add", "cy@example.org", "--confirmed", "--now", NOW)
    assert (
        run("subscribers", "unsubscribe", "cy@example.org").stdout
        == "cy@example.org: unsubscribed\n"
    )
    forgot = run("subscribers", "forget", "cy@example.org", "--yes")
    assert forgot.stdout == "cy@example.org: forgotten (a hashed suppression is kept)\n"
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 0
        assert session.scalars(select(Suppression.reason)).one() == "unsubscribed"
    exported = run("subscribers", "export", "cy@example.org")
    assert exported.exit_code == 1


def test_export_names_the_email_an_unsubscribe_link_came_from(run: Any, app: App) -> None:
    """A withdrawal through an email's link carries that delivery id; other events None."""
    run("subscribers", "add", "eve@example.org", "--confirmed", "--now", NOW)
    assert run("tick", "--now", NOW).exit_code == 0
    with app.sessions() as session:
        subscriber = session.scalars(select(Subscriber)).one()
        delivery_id = session.scalars(select(Delivery.id).where(Delivery.kind == "drip")).one()
    token = make_unsubscribe_token(subscriber.public_id, keys=app.settings.secret_keys)
    unsubscribe_by_token(
        app, token, ip=None, now=datetime.fromisoformat(NOW), delivery_id=delivery_id
    )
    exported = json.loads(run("subscribers", "export", "eve@example.org").stdout)
    assert [(c["kind"], c["delivery_id"]) for c in exported["consent"]] == [
        ("imported", None),
        ("withdrawn", delivery_id),
    ]


def test_forget_asks_first(run: Any, app: App) -> None:
    run("subscribers", "add", "dee@example.org", "--confirmed", "--now", NOW)
    aborted = run("subscribers", "forget", "dee@example.org", input="n\n")
    assert aborted.exit_code == 1
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 1


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_import_reports_taken_and_skipped_and_never_duplicates(
    run: Any, app: App, tmp_path: Path
) -> None:
    source = write_csv(
        tmp_path / "list.csv",
        [
            ["email", "first_name", "timezone", "tags"],
            ["a@example.org", "A", "Europe/Berlin", "vip;blog"],
            ["not-an-email", "B", "", ""],
            ["A@example.org", "A again", "", ""],
            ["c@example.org", "", "Nowhere/Land", ""],
            ["", "", "", ""],
        ],
    )
    result = run("subscribers", "import", str(source), "--confirmed", "--now", NOW)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "taken: 2, skipped: 3"
    assert lines[1].startswith("  line 3: not-an-email: invalid email:")
    assert lines[2] == "  line 4: a@example.org: duplicate in this file"
    assert lines[3].startswith("  line 6: (empty): invalid email:")
    rerun = run("subscribers", "import", str(source), "--confirmed", "--now", NOW)
    assert rerun.stdout.splitlines()[0] == "taken: 0, skipped: 5"
    assert "  line 2: a@example.org: already a subscriber" in rerun.stdout
    with app.sessions() as session:
        rows = {s.email: s for s in session.scalars(select(Subscriber))}
        enrollments = session.scalar(select(func.count()).select_from(Enrollment))
    assert set(rows) == {"a@example.org", "c@example.org"}
    assert rows["a@example.org"].tags == ["vip", "blog"]
    assert rows["c@example.org"].timezone == "Europe/Berlin"  # unknown zone -> default
    assert enrollments == 2


def test_import_never_resubscribes_a_forgotten_address(run: Any, app: App, tmp_path: Path) -> None:
    run("subscribers", "add", "gone@example.org", "--confirmed", "--now", NOW)
    run("subscribers", "forget", "gone@example.org", "--yes")
    source = write_csv(tmp_path / "again.csv", [["email"], ["Gone@example.org"]])
    result = run("subscribers", "import", str(source), "--confirmed")
    assert result.stdout.splitlines() == [
        "taken: 0, skipped: 1",
        "  line 2: gone@example.org: suppressed (forgotten)",
    ]


def test_import_without_confirmed_sends_double_opt_in(run: Any, app: App, tmp_path: Path) -> None:
    """It says how many confirmation emails it will send and asks; no answer, nothing done."""
    source = write_csv(tmp_path / "optin.csv", [["email"], ["p@example.org"], ["q@example.org"]])
    refused = run("subscribers", "import", str(source), "--now", NOW, input="n\n")
    assert refused.exit_code == 1
    assert refused.stdout == (
        "optin.csv has 2 new addresses; without --confirmed each gets a confirmation email "
        "(2 emails will be sent). Continue? [y/N]: n\n"
    )
    assert after_context(refused.stderr) == "Aborted!\n"
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
    accepted = run("subscribers", "import", str(source), "--now", NOW, input="y\n")
    assert accepted.exit_code == 0
    with app.sessions() as session:
        assert set(session.scalars(select(Subscriber.status))) == {"pending"}
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2


def test_import_yes_skips_the_question_and_counts_only_new_addresses(
    run: Any, app: App, tmp_path: Path
) -> None:
    """--yes is for scripts; addresses already on the list are not counted."""
    first = write_csv(tmp_path / "a.csv", [["email"], ["p@example.org"]])
    assert run("subscribers", "import", str(first), "--yes", "--now", NOW).exit_code == 0
    both = write_csv(tmp_path / "b.csv", [["email"], ["p@example.org"], ["r@example.org"]])
    asked = run("subscribers", "import", str(both), "--now", NOW, input="y\n")
    assert asked.stdout.startswith(
        "b.csv has 1 new address; without --confirmed each gets a confirmation email "
        "(1 email will be sent). Continue? [y/N]: y\n"
    )
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2


def test_import_without_email_column_is_refused(run: Any, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "bad.csv", [["name"], ["x"]])
    result = run("subscribers", "import", str(source))
    assert result.exit_code == 1
    assert "no email column found" in result.stderr


def test_import_streams_a_large_file_in_batches(run: Any, app: App, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as handle:
        handle.write("email,first_name\n")
        for i in range(5000):
            handle.write(f"user{i}@example.org,U{i}\n")
        handle.write("broken,row\n")
    result = run("subscribers", "import", str(path), "--confirmed", "--now", NOW)
    assert result.stdout.splitlines()[0] == "taken: 5000, skipped: 1"
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 5000


def test_every_command_has_help(run: Any) -> None:
    for command in ["add", "import", "list", "show", "export", "unsubscribe", "forget"]:
        result = run("subscribers", command, "--help")
        assert result.exit_code == 0
        assert "Usage:" in result.stdout


def test_preview_as_a_real_subscriber(run: Any, tmp_path: Path) -> None:
    """``preview --subscriber`` renders with that subscriber's name from the database."""
    run("subscribers", "add", "zoe@example.org", "--name", "Zoë", "--confirmed", "--now", NOW)
    result = run("preview", "tips/meet-your-ql", "--subscriber", "Zoe@Example.org", "--text")
    assert result.exit_code == 0
    assert "Meet your QL, Zoë" in result.stdout
    missing = run("preview", "tips/meet-your-ql", "--subscriber", "nobody@example.org")
    assert missing.exit_code == 1
    assert "no subscriber with address 'nobody@example.org'" in missing.stderr


def test_add_confirmed_refuses_someone_who_unsubscribed(run: Any, app: App) -> None:
    """Only the person can undo an opt-out; the marketer can send the opt-in email."""
    run("subscribers", "add", "gone2@example.org", "--confirmed", "--now", NOW)
    run("subscribers", "unsubscribe", "gone2@example.org")
    refused = run("subscribers", "add", "gone2@example.org", "--confirmed")
    assert refused.exit_code == 1
    assert "'gone2@example.org' is suppressed (unsubscribed)" in refused.stderr
    assert "without --confirmed" in refused.stderr
    with app.sessions() as session:
        assert session.scalars(select(Subscriber.status)).one() == "unsubscribed"


def test_import_skips_lines_that_are_not_utf8_and_keeps_the_good_rows(
    run: Any, app: App, tmp_path: Path
) -> None:
    """Each physical line is judged on its own; line numbers count physical lines."""
    source = tmp_path / "latin1.csv"
    source.write_bytes(
        b"\xef\xbb\xbfemail,first_name\r\n"  # BOM and CRLF, as Excel writes them
        b"good1@example.org,A\r\n"
        b'"multi@example.org","two\r\nlines"\r\n'  # lines 3-4
        b"\xff\xfe@example.org,B\r\n"  # line 5
        b'"span@example.org","caf\xe9\r\nnext"\r\n'  # lines 6-7, line 6 is Latin-1
        b"good2@example.org,J\xc3\xbcrgen\r\n"  # line 8, UTF-8
    )
    result = run("subscribers", "import", str(source), "--confirmed", "--now", NOW)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "taken: 3, skipped: 2",
        "  line 5: \ufffd\ufffd@example.org: line 5 is not UTF-8; re-save the file as CSV UTF-8",
        "  line 6: span@example.org: line 6 is not UTF-8; re-save the file as CSV UTF-8",
    ]
    with app.sessions() as session:
        names = dict(session.execute(select(Subscriber.email, Subscriber.first_name)).all())
    assert names == {
        "good1@example.org": "A",
        "multi@example.org": "two lines",
        "good2@example.org": "Jürgen",
    }


def test_import_skips_a_record_the_csv_parser_refuses_and_goes_on(
    run: Any, app: App, tmp_path: Path
) -> None:
    """A 200,000-character cell is over csv's field limit: that record only is skipped."""
    source = tmp_path / "huge.csv"
    source.write_text(
        "email,first_name\n"
        "big1@example.org,A\n"
        f"big2@example.org,{'x' * 200_000}\n"
        "big3@example.org,C\n"
    )
    report = tmp_path / "skipped.csv"
    result = run(
        "subscribers", "import", str(source), "--report", str(report), "--now", NOW, "--confirmed"
    )
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "taken: 2, skipped: 1",
        "  line 3: (empty): cannot read as CSV: field larger than field limit (131072)",
    ]
    assert report.read_text().splitlines()[1] == (
        "3,,cannot read as CSV: field larger than field limit (131072)"
    )
    with app.sessions() as session:
        emails = set(session.scalars(select(Subscriber.email)))
    assert emails == {"big1@example.org", "big3@example.org"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Error: cannot read '{path}': Is a directory; give the path of a CSV file"),
        (
            (bytes(range(128, 256)) + b"\n") * 2000,
            "Error: the first line (the header) is not UTF-8; re-save the file as CSV UTF-8",
        ),
        (
            b"x" * 300_000,
            "Error: the first line is longer than 65,536 characters, so it is not a CSV header",
        ),
        (
            b'"' + (b"e" * 1000 + b"\n") * 200 + b'"\n',  # one field over 131,072
            "Error: cannot read the first line as CSV (field larger than field limit (131072))",
        ),
    ],
    ids=["directory", "binary-junk", "no-newline", "huge-header-field"],
)
def test_import_of_a_file_that_cannot_be_read_is_one_line(
    run: Any, app: App, tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "in"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    result = run("subscribers", "import", str(path), "--confirmed", "--now", NOW)
    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = [x for x in after_context(result.stderr).splitlines() if not x.startswith("importing")]
    assert line.startswith(message.format(path=path))
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_import_gives_nonsense_time_zones_the_default_zone(
    run: Any, app: App, tmp_path: Path
) -> None:
    """``America`` is a directory of zones and 300 characters overflow a path: both default."""
    source = write_csv(
        tmp_path / "zones.csv",
        [
            ["email", "timezone"],
            ["dir@example.org", "America"],
            ["long@example.org", "a" * 300],
            ["dots@example.org", "../../etc/passwd"],
            ["ok@example.org", "Asia/Tokyo"],
        ],
    )
    result = run("subscribers", "import", str(source), "--confirmed", "--now", NOW)
    assert result.stdout.splitlines() == ["taken: 4, skipped: 0"]
    with app.sessions() as session:
        zones = dict(session.execute(select(Subscriber.email, Subscriber.timezone)).all())
    assert zones == {
        "dir@example.org": "Europe/Berlin",
        "long@example.org": "Europe/Berlin",
        "dots@example.org": "Europe/Berlin",
        "ok@example.org": "Asia/Tokyo",
    }
