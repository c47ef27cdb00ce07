"""What a new user and an operator meet first: settings, start-up checks, CLI wording (#12)."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.cli import main
from newsletter.errors import ConfigurationError
from newsletter.logs import JsonFormatter, configure_logging, did_something, job_line, log_job
from newsletter.models import Base, Delivery, Subscriber
from newsletter.settings import load_settings
from newsletter.subscriptions import (
    SubscribeOutcome,
    SubscribeRequest,
    subscribe,
    unsubscribe_email,
)
from tests.conftest import NOW, ROOT

NOW_TEXT = NOW.isoformat()


def invoke(env: dict[str, Any], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


# ---- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "SUBSCRIBE_RATE_LIMIT",
            "lots",
            "NEWSLETTER_SUBSCRIBE_RATE_LIMIT: 'lots' is not a rate; write e.g. 10/minute, "
            "100/hour or 10/minute;100/day",
        ),
        (
            "FROM_EMAIL",
            "bad",
            "NEWSLETTER_FROM_EMAIL: 'bad' is not an email address (An email address must have "
            "an @-sign.); e.g. tips@shop.example",
        ),
        (
            "REPLY_TO",
            "x@",
            "NEWSLETTER_REPLY_TO: 'x@' is not an email address (There must be something after "
            "the @-sign.); e.g. tips@shop.example",
        ),
        (
            "ALLOWED_ORIGINS",
            "notanorigin",
            "NEWSLETTER_ALLOWED_ORIGINS: 'notanorigin' is not an origin (no http:// or "
            "https://); an origin is scheme://host[:port], e.g. https://shop.example",
        ),
        (
            "ALLOWED_ORIGINS",
            "https://shop.example,shop.example",
            "NEWSLETTER_ALLOWED_ORIGINS: 'shop.example' is not an origin (no http:// or "
            "https://); an origin is scheme://host[:port], e.g. https://shop.example",
        ),
        (
            "ALLOWED_ORIGINS",
            "https://shop.example/signup",
            "NEWSLETTER_ALLOWED_ORIGINS: 'https://shop.example/signup' is not an origin (it has "
            "more than a host); an origin is scheme://host[:port], e.g. https://shop.example",
        ),
        (
            "BATCH_SIZE",
            "many",
            "NEWSLETTER_BATCH_SIZE: Input should be a valid integer, unable to parse string as "
            "an integer (got 'many')",
        ),
        (
            "LOG_FORMAT",
            "xml",
            "NEWSLETTER_LOG_FORMAT: Input should be 'text' or 'json' (got 'xml')",
        ),
    ],
    ids=[
        "rate",
        "from-email",
        "reply-to",
        "origin-no-scheme",
        "origin-in-a-list",
        "origin-with-path",
        "int",
        "log-format",
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    cli_env: dict[str, Any], name: str, value: str, message: str
) -> None:
    """Every command refuses at start-up: one line on stderr, exit 1, no traceback."""
    env = {**cli_env, f"NEWSLETTER_{name}": value}
    for command in (["subscribers", "list"], ["content", "check"], ["tick"]):
        result = invoke(env, *command)
        assert result.exit_code == 1, command
        assert result.stderr == f"Error: {message}\n", command
        assert result.stdout == ""


def test_several_bad_settings_are_named_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            {
                "NEWSLETTER_VAR_DIR": str(tmp_path),
                "NEWSLETTER_SECRET_KEY": "k",
                "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "lots",
                "NEWSLETTER_FROM_EMAIL": "bad",
            }
        )
    assert caught.value.variable == "NEWSLETTER_FROM_EMAIL"
    assert "; NEWSLETTER_SUBSCRIBE_RATE_LIMIT: 'lots' is not a rate" in str(caught.value)


def test_a_secret_value_is_never_repeated(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            {
                "NEWSLETTER_VAR_DIR": str(tmp_path),
                "NEWSLETTER_SECRET_KEY": "k",
                "NEWSLETTER_SMTP_URL": "ftp://user:hunter2@host",
            }
        )
    assert "hunter2" not in str(caught.value)


def test_origins_are_normalised(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "NEWSLETTER_VAR_DIR": str(tmp_path),
            "NEWSLETTER_SECRET_KEY": "k",
            "NEWSLETTER_ALLOWED_ORIGINS": " https://Shop.Example/ , http://127.0.0.1:8765",
            "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "10/minute;100/day",
        }
    )
    assert settings.origins == ("https://shop.example", "http://127.0.0.1:8765")


def test_a_missing_cron_file_prints_only_its_message(
    cli_env: dict[str, Any], tmp_path: Path
) -> None:
    env = {**cli_env, "NEWSLETTER_CRON_FILE": str(tmp_path / "nope.yaml")}
    result = invoke(env, "serve", "--port", "0")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: NEWSLETTER_CRON_FILE: cron file '{tmp_path / 'nope.yaml'}' not found; create "
        "it (see cron.yaml in the project) or run newsletter from the project folder (the one "
        "with content/, templates/ and cron.yaml), or set NEWSLETTER_CRON_FILE\n"
    )


def test_an_outbox_that_cannot_be_written_is_refused_at_start_up(
    cli_env: dict[str, Any], db_url: str, tmp_path: Path
) -> None:
    """Refused before anything runs: no row is leased by a tick that then cannot write."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    env = {**cli_env, "NEWSLETTER_OUTBOX_DIR": str(blocker / "outbox")}
    invoke(cli_env, "subscribers", "add", "q@example.org", "--now", NOW_TEXT)
    result = invoke(env, "tick", "--now", NOW_TEXT)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: NEWSLETTER_OUTBOX_DIR: cannot write to '{blocker / 'outbox'}' (Not a "
        "directory); make it writable or point NEWSLETTER_OUTBOX_DIR at a folder you can write\n"
    )
    app = App(load_settings(cli_env))
    try:
        with app.sessions() as session:
            assert set(session.scalars(select(Delivery.status))) == {"queued"}
    finally:
        app.close()


# ---- which database, which folder ---------------------------------------------------


def test_outside_a_project_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No content folder: refused with the way out; no var/, no database, no secret key."""
    monkeypatch.chdir(tmp_path)
    result = invoke({}, "subscribers", "list")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: NEWSLETTER_CONTENT_DIR: content folder '{tmp_path / 'content'}' not found; run "
        "newsletter from the project folder (the one with content/, templates/ and cron.yaml), "
        "or set NEWSLETTER_CONTENT_DIR\n"
    )
    assert list(tmp_path.iterdir()) == []


def _all_migrations() -> list[str]:
    """Every revision as ``db upgrade`` lists it, oldest first, read from Alembic itself."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(ROOT / "newsletter" / "migrations"))
    script = ScriptDirectory.from_config(config)
    return [
        f"  {s.revision}  {(s.doc or '').strip().splitlines()[0]}"
        for s in reversed(list(script.walk_revisions()))
    ]


def context(env: dict[str, Any]) -> str:
    """The line every command that opens the database or the content folder starts with."""
    return (
        f"using database {env['NEWSLETTER_DATABASE_URL']}, content {env['NEWSLETTER_CONTENT_DIR']}"
    )


def test_only_serve_worker_and_db_upgrade_create_a_database(
    cli_env: dict[str, Any], tmp_path: Path
) -> None:
    database = tmp_path / "fresh" / "new.db"
    env = {**cli_env, "NEWSLETTER_DATABASE_URL": f"sqlite:///{database}"}
    refused = invoke(env, "subscribers", "list")
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"{context(env)}\n"
        f"Error: no newsletter database at sqlite:///{database}; create it with `newsletter db "
        "upgrade` (or `newsletter serve`), or set NEWSLETTER_DATABASE_URL to the one you use\n"
    )
    assert not database.exists()
    created = invoke(env, "db", "upgrade")
    assert created.exit_code == 0
    assert created.stderr == f"{context(env)}\n"
    revisions = _all_migrations()
    assert revisions[0] == "  0001  initial schema"
    assert created.stdout == (
        f"created sqlite:///{database}: applied {len(revisions)} migration"
        + ("s" if len(revisions) > 1 else "")
        + "\n"
        + "".join(f"{line}\n" for line in revisions)
    )
    again = invoke(env, "db", "upgrade")
    assert again.stdout == f"sqlite:///{database} is up to date\n"
    assert invoke(env, "subscribers", "list").exit_code == 0


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(
            ("preview", "tips/meet-your-ql", "--subscriber", "ann@example.org"), id="preview"
        ),
        pytest.param(
            ("preview", "tips/meet-your-ql", "--subscriber", "ann@example.org", "--text"),
            id="preview-text",
        ),
        pytest.param(("subscribers", "show", "ann@example.org"), id="show"),
        pytest.param(("subscribers", "export", "ann@example.org"), id="export"),
        pytest.param(("stats", "--format", "json"), id="stats"),
        pytest.param(("campaign", "list"), id="campaign-list"),
        pytest.param(("sequence", "show", "back-pain-basics"), id="sequence-show"),
        pytest.param(("subscribers", "plan", "ann@example.org"), id="plan"),
        pytest.param(("subscribers", "timeline", "ann@example.org"), id="timeline"),
        pytest.param(("subscribers", "list"), id="list"),
        pytest.param(("webhook", "list"), id="webhook-list"),
        pytest.param(("api-key", "list"), id="api-key-list"),
        pytest.param(("events", "inbox"), id="events-inbox"),
        pytest.param(("tick", "--dry-run"), id="tick-dry-run"),
    ],
)
def test_read_only_commands_never_create_a_database(
    cli_env: dict[str, Any], tmp_path: Path, args: tuple[str, ...]
) -> None:
    """Each refuses with the way out; the file does not exist afterwards, nor its folder."""
    database = tmp_path / "fresh" / "new.db"
    env = {**cli_env, "NEWSLETTER_DATABASE_URL": f"sqlite:///{database}"}
    refused = invoke(env, *args)
    assert refused.exit_code == 1, refused.output
    assert refused.stdout == ""
    assert refused.stderr == (
        f"{context(env)}\n"
        f"Error: no newsletter database at sqlite:///{database}; create it with `newsletter db "
        "upgrade` (or `newsletter serve`), or set NEWSLETTER_DATABASE_URL to the one you use\n"
    )
    assert not database.exists()
    assert not (tmp_path / "fresh").exists()


def test_only_serve_worker_and_db_upgrade_keep_a_new_secret_key(
    cli_env: dict[str, Any], tmp_path: Path
) -> None:
    """Without NEWSLETTER_SECRET_KEY and no kept key, a database command refuses and writes
    nothing; `db upgrade` keeps one, and the other commands use it from then on."""
    assert invoke(cli_env, "db", "upgrade").exit_code == 0
    env = {k: v for k, v in cli_env.items() if k != "NEWSLETTER_SECRET_KEY"}
    kept = Path(env["NEWSLETTER_VAR_DIR"]) / "secret_key"
    refused = invoke(env, "subscribers", "list")
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"{context(env)}\n"
        f"Error: NEWSLETTER_SECRET_KEY: not set, and no key is kept in {str(kept)!r}; set it "
        "to the key your server uses, or run `newsletter db upgrade` once to keep one\n"
    )
    assert not kept.exists()
    checked = invoke(env, "content", "check")  # no database, no key needed
    assert checked.exit_code == 0
    assert not kept.exists()
    upgraded = invoke(env, "db", "upgrade")
    assert upgraded.exit_code == 0
    assert upgraded.stderr == (
        f"{context(env)}\n"
        f"warning: NEWSLETTER_SECRET_KEY is not set; generated one and kept it in {kept}\n"
    )
    key = kept.read_text()
    listed = invoke(env, "subscribers", "list", "--format", "json")
    assert (listed.exit_code, listed.stdout, listed.stderr) == (0, "[]\n", f"{context(env)}\n")
    assert kept.read_text() == key


def test_every_command_says_which_database_and_content_folder_on_stderr(
    cli_env: dict[str, Any],
) -> None:
    """One line on stderr, without --verbose and without a terminal; stdout stays data."""
    assert invoke(cli_env, "db", "upgrade").exit_code == 0
    as_json = invoke(cli_env, "subscribers", "list", "--format", "json")
    assert (as_json.stdout, as_json.stderr) == ("[]\n", f"{context(cli_env)}\n")
    assert json.loads(as_json.stdout) == []
    as_csv = invoke(cli_env, "subscribers", "list", "--format", "csv")
    assert (as_csv.stdout, as_csv.stderr) == (
        "email,first_name,status,timezone,tags,created_at\n",
        f"{context(cli_env)}\n",
    )
    stats = invoke(cli_env, "stats", "--format", "json")
    assert json.loads(stats.stdout)["sequences"] == []
    assert stats.stderr == f"{context(cli_env)}\n"
    checked = invoke(cli_env, "content", "check")
    assert checked.stderr.splitlines()[0] == context(cli_env)
    verbose = invoke(cli_env, "--verbose", "subscribers", "list", "--format", "json")
    assert verbose.stderr.splitlines()[0] == context(cli_env)
    assert verbose.stderr.count("using database") == 1
    assert invoke(cli_env, "timezones", "--help").stderr == ""  # opens nothing, says nothing


def test_the_context_line_masks_the_database_password(cli_env: dict[str, Any]) -> None:
    env = {
        **cli_env,
        "NEWSLETTER_DATABASE_URL": "postgresql+psycopg://shop:s3cret-pw@127.0.0.1:1/news",
    }
    result = invoke(env, "subscribers", "list")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "using database postgresql+psycopg://shop:***@127.0.0.1:1/news, content "
        f"{cli_env['NEWSLETTER_CONTENT_DIR']}"
    )
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_a_busy_port_is_one_line(cli_env: dict[str, Any]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = invoke(cli_env, "serve", "--port", str(port))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{context(cli_env)}\n"
        f"Error: port {port} on 127.0.0.1 is already in use (another `newsletter serve`?); "
        f"stop it, or pick another port: --port {port + 1} (make serve PORT={port + 1})\n"
    )


def test_make_serve_takes_a_port() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "PORT ?= 8000" in makefile
    assert "$(BIN)/newsletter serve --port $(PORT)" in makefile


# ---- usage errors, tick --------------------------------------------------------------


def test_a_usage_error_is_one_line_with_exit_code_2(cli_env: dict[str, Any]) -> None:
    result = invoke(cli_env, "tick", "--now", "garbage")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: Invalid value for --now: 'garbage' is not ISO-8601; use e.g. "
        "2026-12-01T09:00:00+00:00 (see `main tick --help`)\n"
    )
    unknown = invoke(cli_env, "subscribers", "lst")
    assert unknown.exit_code == 2
    assert unknown.stderr == (
        "Error: No such command 'lst'. Did you mean 'list'? (see `main subscribers --help`)\n"
    )


def test_tick_help_says_now_acts_for_real() -> None:
    result = CliRunner().invoke(main, ["tick", "--help"], terminal_width=200)
    assert "It acts for real: emails due by then are planned and SENT now." in result.stdout
    assert "--dry-run" in result.stdout


def _dump(app: App) -> dict[str, list[tuple[Any, ...]]]:
    with app.engine.connect() as conn:
        return {
            table.name: sorted(
                (tuple(map(str, row)) for row in conn.execute(select(table))), key=str
            )
            for table in Base.metadata.sorted_tables
        }


def test_tick_dry_run_shows_what_would_be_sent_and_writes_nothing(
    cli_env: dict[str, Any], tmp_path: Path
) -> None:
    """A pending subscriber's confirmation and a confirmed one's welcome (planned by
    plan-drips in the same run) are shown; every table and the outbox stay as they were."""
    invoke(cli_env, "subscribers", "add", "p@example.org", "--now", NOW_TEXT)
    invoke(cli_env, "subscribers", "add", "a@example.org", "--confirmed", "--now", NOW_TEXT)
    app = App(load_settings(cli_env))
    try:
        before = _dump(app)
        result = invoke(cli_env, "tick", "--dry-run", "--now", NOW_TEXT)
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0] == (
            "dry run as of 2026-11-24T09:00:00+00:00: nothing is written, no email is sent"
        )
        assert lines[-3:] == [
            "would send 2 emails:",
            "       1  confirmation system/confirmation",
            "       1  drip         system/welcome",
        ] or lines[-3:] == [
            "would send 2 emails:",
            "       1  drip         system/welcome",
            "       1  confirmation system/confirmation",
        ]
        assert "nothing is posted to webhook endpoints" in result.stdout  # webhooks: skipped
        assert _dump(app) == before
        outbox = Path(cli_env["NEWSLETTER_OUTBOX_DIR"])
        assert not outbox.exists() or list(outbox.iterdir()) == []
        real = invoke(cli_env, "tick", "--now", NOW_TEXT)
        assert real.exit_code == 0
        with app.sessions() as session:
            assert session.scalar(select(func.count()).where(Delivery.status == "sent")) == 2
    finally:
        app.close()


# ---- logging ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"requeued": 0, "unknown": 0}, False),
        ({"batches": 0, "outcomes": {}}, False),
        ({"batches": 0, "outcomes": {"sent": 2}}, True),
        ({"planned": 1}, True),
        ({"claimed": 0, "backoff_until": "2026-11-24T09:00:00+00:00"}, True),
        ({"halted": False}, False),
        (
            {"batches": 0, "claimed": 0, "sent": 0, "outcomes": {}, "commits": 1},
            False,
        ),
        ({"advanced": 0, "planned": 0, "deferred": 0, "locked": False, "batches": 2}, False),
        ({"planned": 0, "locked": True, "batches": 0}, False),
        ({"enabled": False}, False),
        ({"endpoints": 1, "delivered": 0, "retrying": 0, "failed": 0}, False),
        ({"endpoints": 1, "delivered": 0, "retrying": 0, "failed": 1}, True),
        ({"processed": 0, "unparsed": 0, "already": 0, "error": "login refused"}, True),
    ],
    ids=[
        "zeros",
        "empty-nested",
        "nested-count",
        "count",
        "backoff",
        "false",
        "deliver-idle",
        "plan-drips-idle",
        "plan-drips-locked",
        "disabled",
        "webhooks-idle",
        "webhooks-failed",
        "bounces-error",
    ],
)
def test_did_something(result: dict[str, Any], expected: bool) -> None:
    assert did_something(result) is expected


def test_a_canonical_line_per_job_run_that_did_something(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("newsletter.scheduling")
    with caplog.at_level(logging.INFO, logger="newsletter.scheduling"):
        log_job(log, "deliver", {"claimed": 3, "outcomes": {"sent": 3}}, 0.1234)
        log_job(log, "plan-drips", {"planned": 0}, 0.01)
    assert [r.getMessage() for r in caplog.records] == [
        "job deliver: claimed=3 outcomes.sent=3 (0.12s)"
    ]
    record = caplog.records[0]
    entry = json.loads(JsonFormatter().format(record))
    assert entry["job"] == "deliver"
    assert entry["counts"] == {"claimed": 3, "outcomes": {"sent": 3}}
    assert entry["duration_s"] == 0.123
    assert entry["level"] == "INFO"
    assert job_line("x", {}, 0) == "job x:  (0.00s)"


def test_idle_job_runs_log_nothing_at_info_and_work_logs_one_line(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """Every real job over a database with nothing due: no INFO line (DEBUG, as --verbose
    shows); a run that planned something: one canonical INFO line."""
    from newsletter.jobs import JOBS
    from newsletter.scheduling import _run
    from newsletter.subscribers import add_subscriber

    with caplog.at_level(logging.DEBUG, logger="newsletter.scheduling"):
        for name in JOBS:
            _run(app, name)
    records = [r for r in caplog.records if r.name == "newsletter.scheduling"]
    assert [(r.levelname, r.job) for r in records] == [  # type: ignore[attr-defined]
        ("DEBUG", name) for name in JOBS
    ]
    caplog.clear()
    add_subscriber(
        app, "ann@example.org", first_name=None, timezone=None, tags=(), confirmed=True, now=NOW
    )
    with caplog.at_level(logging.INFO, logger="newsletter.scheduling"):
        for name in JOBS:
            _run(app, name)
    lines = [r.getMessage() for r in caplog.records if r.name == "newsletter.scheduling"]
    assert [line.split(":")[0] for line in lines] == ["job plan-drips", "job deliver"]
    assert " planned=1 " in lines[0]
    assert " sent=1 " in lines[1]


def test_json_log_lines_parse_and_carry_the_counts(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    """NEWSLETTER_LOG_FORMAT=json with --verbose: every stderr line is one JSON object."""
    from newsletter.jobs import JOBS
    from newsletter.scheduling import _run

    try:
        configure_logging(verbose=True, fmt="json")
        capsys.readouterr()
        for name in JOBS:
            _run(app, name)
        lines = capsys.readouterr().err.splitlines()
    finally:
        configure_logging(verbose=False)
    entries = [json.loads(line) for line in lines]
    jobs = [e for e in entries if e["logger"] == "newsletter.scheduling"]
    assert [(e["job"], e["level"]) for e in jobs] == [(name, "DEBUG") for name in JOBS]
    deliver = next(e for e in jobs if e["job"] == "deliver")
    assert deliver["counts"]["claimed"] == 0
    assert isinstance(deliver["duration_s"], float)
    assert deliver["message"].startswith("job deliver: batches=0 claimed=0 sent=0")


def test_apscheduler_is_quiet_unless_verbose() -> None:
    try:
        configure_logging(verbose=False)
        assert logging.getLogger("apscheduler").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("newsletter").getEffectiveLevel() == logging.INFO
        configure_logging(verbose=True, fmt="json")
        assert logging.getLogger("apscheduler").getEffectiveLevel() == logging.DEBUG
        handlers = [h for h in logging.getLogger().handlers if getattr(h, "_newsletter", False)]
        assert len(handlers) == 1
        assert isinstance(handlers[0].formatter, JsonFormatter)
    finally:
        configure_logging(verbose=False)


# ---- subscribers ------------------------------------------------------------------------


def test_list_limit_and_search(cli_env: dict[str, Any]) -> None:
    for n in range(3):
        invoke(
            cli_env,
            "subscribers",
            "add",
            f"ann{n}@example.org",
            "--confirmed",
            "--name",
            "Ann",
            "--now",
            NOW_TEXT,
        )
    invoke(
        cli_env,
        "subscribers",
        "add",
        "bob@example.org",
        "--confirmed",
        "--name",
        "Bob",
        "--now",
        NOW_TEXT,
    )
    limited = invoke(cli_env, "subscribers", "list", "--limit", "2")
    assert limited.stdout.splitlines()[0].strip() == (
        "first 2 subscribers (more match: --limit N, or --limit 0 for all)"
    )
    assert limited.stdout.count("@example.org") == 2
    found = invoke(cli_env, "subscribers", "list", "--search", "BOB", "--format", "csv")
    assert [line.split(",")[0] for line in found.stdout.splitlines()] == [
        "email",
        "bob@example.org",
    ]
    by_name = invoke(cli_env, "subscribers", "list", "--search", "ann", "--format", "json")
    assert len(json.loads(by_name.stdout)) == 3
    literal = invoke(cli_env, "subscribers", "list", "--search", "%", "--format", "json")
    assert json.loads(literal.stdout) == []


def test_add_refuses_an_unknown_zone(cli_env: dict[str, Any]) -> None:
    result = invoke(cli_env, "subscribers", "add", "z@example.org", "--timezone", "Mars/Base")
    assert result.exit_code == 1
    assert result.stderr == (
        f"{context(cli_env)}\n"
        "Error: unknown time zone 'Mars/Base' for --timezone; use an IANA name such as "
        "Europe/Berlin (`newsletter timezones` lists them)\n"
    )
    listed = invoke(cli_env, "timezones", "berl")
    assert listed.stdout == "Europe/Berlin\n"


def test_import_warns_once_per_unknown_zone_and_reports_the_rows(
    cli_env: dict[str, Any], tmp_path: Path
) -> None:
    source = tmp_path / "zones.csv"
    source.write_text(
        "email,timezone\na@example.org,Mars/Base\nb@example.org,Mars/Base\n"
        "c@example.org,Asia/Tokyo\nd@example.org,Moon/Crater\n"
    )
    report = tmp_path / "report.csv"
    result = invoke(
        cli_env, "subscribers", "import", str(source), "--confirmed", "--report", str(report)
    )
    assert result.exit_code == 0
    assert result.stdout == "taken: 4, skipped: 0\n"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert warnings == [
        f"warning: unknown time zone 'Mars/Base' on 2 rows; imported with Europe/Berlin "
        f"(listed in {report}; `newsletter timezones` lists the zones)",
        f"warning: unknown time zone 'Moon/Crater' on 1 row; imported with Europe/Berlin "
        f"(listed in {report}; `newsletter timezones` lists the zones)",
    ]
    assert report.read_text().splitlines() == [
        "line,email,reason",
        "2,a@example.org,unknown time zone 'Mars/Base'; imported with Europe/Berlin",
        "3,b@example.org,unknown time zone 'Mars/Base'; imported with Europe/Berlin",
        "5,d@example.org,unknown time zone 'Moon/Crater'; imported with Europe/Berlin",
    ]


def test_show_numbers_steps_from_one(cli_env: dict[str, Any]) -> None:
    invoke(cli_env, "subscribers", "add", "s@example.org", "--confirmed", "--now", NOW_TEXT)
    shown = invoke(cli_env, "subscribers", "show", "s@example.org")
    [line] = [x for x in shown.stdout.splitlines() if "back-pain-basics" in x]
    assert line.startswith("  back-pain-basics: active, next step 1, due ")


def test_resubscribing_within_the_hour_after_an_unsubscribe_sends_the_link(
    app: App,
) -> None:
    """The throttle is for repeated posts of a pending address, not for someone coming back."""
    request = SubscribeRequest(email="back@example.org")
    assert subscribe(app, request, now=NOW) is SubscribeOutcome.CONFIRMATION_QUEUED
    assert subscribe(app, request, now=NOW) is SubscribeOutcome.THROTTLED
    from datetime import timedelta

    unsubscribe_email(app, "back@example.org", now=NOW + timedelta(minutes=5))
    again = subscribe(app, request, now=NOW + timedelta(minutes=10))
    assert again is SubscribeOutcome.CONFIRMATION_QUEUED
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2
        assert session.scalar(select(Subscriber.status)) == "pending"


# ---- campaigns ----------------------------------------------------------------------------


def test_a_campaign_name_is_a_slug(cli_env: dict[str, Any]) -> None:
    invoke(cli_env, "subscribers", "add", "c@example.org", "--confirmed", "--now", NOW_TEXT)
    result = invoke(
        cli_env, "campaign", "create", "campaigns/seven-day-reset", "--name", "Black Friday"
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"{context(cli_env)}\n"
        "Error: campaign name 'Black Friday' is not a slug: use lower-case letters, digits and "
        "hyphens, e.g. --name black-friday\n"
    )


def test_a_second_campaign_of_a_sent_item_to_the_same_segment_asks(
    cli_env: dict[str, Any],
) -> None:
    invoke(cli_env, "subscribers", "add", "c@example.org", "--confirmed", "--now", NOW_TEXT)
    item = "campaigns/seven-day-reset"
    assert invoke(cli_env, "campaign", "create", item, "--now", NOW_TEXT).exit_code == 0
    sent = invoke(cli_env, "campaign", "send", "seven-day-reset", "--yes", "--now", NOW_TEXT)
    assert sent.exit_code == 0, sent.output
    refused = invoke(cli_env, "campaign", "create", item, "--now", NOW_TEXT, input="n\n")
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"{context(cli_env)}\n"
        "warning: campaigns/seven-day-reset was already sent to this segment by campaign "
        "'seven-day-reset'; a new campaign sends it to them again\nAborted!\n"
    )
    assert refused.stdout == "Create another campaign of it? [y/N]: n\n"
    other_segment = invoke(cli_env, "campaign", "create", item, "--tag", "vip", "--now", NOW_TEXT)
    assert "already sent" not in other_segment.stderr
    scripted = invoke(cli_env, "campaign", "create", item, "--yes", "--now", NOW_TEXT)
    assert scripted.exit_code == 0
    assert scripted.stdout.startswith("created draft 'seven-day-reset-2'")


# ---- content and email copy ------------------------------------------------------------


def test_content_check_reports_every_problem_of_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from content_fixtures import build_library, use_library

    root = build_library(
        tmp_path,
        {"content/tips/bad.md": "---\ncolour: red\ntemplate: nope\nsubject: 3\n---\nBody\n"},
    )
    use_library(monkeypatch, root)
    result = CliRunner().invoke(main, ["content", "check"])
    assert result.exit_code == 1
    problems = [line for line in result.stdout.splitlines() if "bad.md" in line]
    expected = [
        "content/tips/bad.md:2: unknown front-matter key 'colour'; allowed keys: ",
        "content/tips/bad.md:4: subject must be a string, got int 3",
        "content/tips/bad.md:2: missing preheader: add 'preheader: ...'",
        "content/tips/bad.md:3: unknown template 'nope': no nope.html and nope.txt",
    ]
    assert len(problems) == len(expected), problems
    for line, start in zip(problems, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_welcome_signs_off_on_two_lines_without_a_double_newsletter(app: App) -> None:
    from newsletter.content.library import SAMPLE_SUBSCRIBER, load_library

    settings = app.settings.model_copy(update={"from_name": "Newsletter"})
    library = load_library(settings)
    rendered = library.render("system/welcome", SAMPLE_SUBSCRIBER, library.sample_links())
    assert "Talk soon,<br>\nNewsletter</p>" in rendered.html
    assert "Talk soon,\nNewsletter\n" in rendered.text
    for body in (rendered.html, rendered.text):
        assert "Newsletter's newsletter" not in body
        assert "because you subscribed to emails from Newsletter at" in body


def test_readme_documents_the_first_steps() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "# NEWSLETTER_BASE_URL=https://news.shop.example" in readme
    assert "restart" in readme
    assert "drop the `public` schema" in readme
    assert "exit code 2" in readme
    assert "NEWSLETTER_LOG_FORMAT" in readme


def test_a_model_validator_names_its_variable_itself(tmp_path: Path) -> None:
    """Settings added by other issues get the same one-line message from the one place."""
    from pydantic import ValidationError, model_validator

    from newsletter.settings import Settings, configuration_error

    class Extended(Settings):
        @model_validator(mode="after")
        def _needs_https(self) -> Extended:
            if not self.base_url.startswith("https://"):
                raise ValueError("NEWSLETTER_BASE_URL: must be https:// for this feature")
            return self

    with pytest.raises(ValidationError) as caught:
        Extended.model_validate({"var_dir": str(tmp_path), "base_url": "http://x"})
    error = configuration_error(caught.value)
    assert error.variable == "NEWSLETTER_BASE_URL"
    assert str(error) == "NEWSLETTER_BASE_URL: must be https:// for this feature"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("https://shop.example?x=1", "(it has more than a host)"),
        ("https://shop.example#top", "(it has more than a host)"),
        ("https://user@shop.example", "(it has more than a host)"),
        ("https://shop.example:99999", "is not an origin; an origin is"),
        ("ftp://shop.example", "(no http:// or https://)"),
        ("https://", "(no host)"),
    ],
    ids=["query", "fragment", "user-info", "bad-port", "other-scheme", "no-host"],
)
def test_an_origin_is_only_scheme_host_and_port(tmp_path: Path, value: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            {
                "NEWSLETTER_VAR_DIR": str(tmp_path),
                "NEWSLETTER_SECRET_KEY": "k",
                "NEWSLETTER_ALLOWED_ORIGINS": value,
            }
        )
    assert str(caught.value).startswith(f"NEWSLETTER_ALLOWED_ORIGINS: {value!r} ")
    assert problem in str(caught.value)


def test_valid_values_are_kept_as_written(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "NEWSLETTER_VAR_DIR": str(tmp_path),
            "NEWSLETTER_SECRET_KEY": "k",
            "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "10/minute;100/day",
            "NEWSLETTER_FROM_EMAIL": " Tips@Shop.Example ",
            "NEWSLETTER_REPLY_TO": "help@shop.example",
        }
    )
    assert settings.subscribe_rate_limit == "10/minute;100/day"
    assert settings.from_email == "Tips@Shop.Example"
    assert settings.reply_to == "help@shop.example"
    assert (
        load_settings({"NEWSLETTER_VAR_DIR": str(tmp_path), "NEWSLETTER_SECRET_KEY": "k"}).reply_to
        == ""
    )


def test_long_values_are_cut_and_field_messages_are_not_split(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            {
                "NEWSLETTER_VAR_DIR": str(tmp_path),
                "NEWSLETTER_SECRET_KEY": "k",
                "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "x" * 100,
                "NEWSLETTER_BATCH_SIZE": "y" * 100,
            }
        )
    message = str(caught.value)
    assert f"'{'x' * 64}' is not a rate" in message
    assert f"(got '{'y' * 64}')" in message
    assert "x" * 65 not in message
    assert "y" * 65 not in message
    assert caught.value.variable == "NEWSLETTER_SUBSCRIBE_RATE_LIMIT"
    with pytest.raises(ConfigurationError) as other:
        load_settings(
            {
                "NEWSLETTER_VAR_DIR": str(tmp_path),
                "NEWSLETTER_SECRET_KEY": "k",
                "NEWSLETTER_DATABASE_URL": "mysql://NEWSLETTER_X: y",
            }
        )
    assert other.value.variable == "NEWSLETTER_DATABASE_URL"
