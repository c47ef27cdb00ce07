"""Settings: validated at start-up, errors name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.errors import ConfigurationError
from newsletter.settings import Settings, load_settings, read_settings


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = load_settings({"NEWSLETTER_VAR_DIR": str(tmp_path)})
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'newsletter.db'}"
    assert settings.mail_backend == "outbox"
    assert settings.effective_outbox_dir == tmp_path / "outbox"


def test_missing_secret_is_generated_once_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = load_settings({"NEWSLETTER_VAR_DIR": str(tmp_path)})
    assert "NEWSLETTER_SECRET_KEY is not set" in capsys.readouterr().err
    second = load_settings({"NEWSLETTER_VAR_DIR": str(tmp_path)})
    assert first.secret_keys == second.secret_keys
    assert len(first.secret_keys[0]) > 40
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_rotated_keys_newest_first(tmp_path: Path) -> None:
    settings = load_settings(
        {"NEWSLETTER_VAR_DIR": str(tmp_path), "NEWSLETTER_SECRET_KEY": "new, old"}
    )
    assert settings.secret_keys == ("new", "old")


@pytest.mark.parametrize(
    ("environ", "variable", "fragment"),
    [
        ({"NEWSLETTER_MAIL_BACKEND": "pigeon"}, "NEWSLETTER_MAIL_BACKEND", "outbox"),
        ({"NEWSLETTER_DEFAULT_TIMEZONE": "Mars/Base"}, "NEWSLETTER_DEFAULT_TIMEZONE", "Mars/Base"),
        ({"NEWSLETTER_SEND_RATE": "fast"}, "NEWSLETTER_SEND_RATE", "number"),
        ({"NEWSLETTER_SEND_RATE": "-1"}, "NEWSLETTER_SEND_RATE", "greater than or equal"),
        ({"NEWSLETTER_BASE_URL": "news.example"}, "NEWSLETTER_BASE_URL", "http"),
        ({"NEWSLETTER_DATABASE_URL": "mysql://x"}, "NEWSLETTER_DATABASE_URL", "mysql"),
        ({"NEWSLETTER_MAIL_BACKEND": "smtp"}, "NEWSLETTER_SMTP_URL", "required"),
        ({"NEWSLETTER_MAIL_BACKEND": "sendgrid"}, "NEWSLETTER_SENDGRID_API_KEY", "required"),
        ({"NEWSLETTER_SMTP_URL": "http://x"}, "NEWSLETTER_SMTP_URL", "smtp://"),
        ({"NEWSLETTER_SQLITE_SYNCHRONOUS": "off"}, "NEWSLETTER_SQLITE_SYNCHRONOUS", "full"),
    ],
)
def test_bad_setting_names_the_variable(
    tmp_path: Path, environ: dict[str, str], variable: str, fragment: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            {"NEWSLETTER_VAR_DIR": str(tmp_path), "NEWSLETTER_SECRET_KEY": "k", **environ}
        )
    assert caught.value.variable == variable
    assert str(caught.value).startswith(variable)
    assert fragment in str(caught.value)


def test_sendgrid_key_is_read_without_prefix(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "NEWSLETTER_VAR_DIR": str(tmp_path),
            "NEWSLETTER_SECRET_KEY": "k",
            "SENDGRID_API_KEY": "SG.abc",
            "NEWSLETTER_MAIL_BACKEND": "sendgrid",
        }
    )
    assert settings.sendgrid_api_key == "SG.abc"


def test_postgres_urls_get_the_psycopg_driver(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "NEWSLETTER_VAR_DIR": str(tmp_path),
            "NEWSLETTER_SECRET_KEY": "k",
            "NEWSLETTER_DATABASE_URL": "postgresql://u@h/db",
        }
    )
    assert settings.database_url == "postgresql+psycopg://u@h/db"


# Every setting with a value that can be wrong, with one bad value and the whole one-line
# message it gives. A setting added to Settings must appear here or in FREE_FORM.
BAD_VALUES = {
    "DATABASE_URL": (
        "mysql://x",
        "must be a sqlite:/// or postgresql+psycopg:// URL, got 'mysql'",
    ),
    "BASE_URL": ("news.example", "must start with http:// or https://, got 'news.example'"),
    "MAIL_BACKEND": ("pigeon", "Input should be 'outbox', 'sendgrid' or 'smtp' (got 'pigeon')"),
    "SENDGRID_API_URL": (
        "api.sendgrid.com",
        "must start with http:// or https://, got 'api.sendgrid.com'",
    ),
    "SENDGRID_WEBHOOK_PUBLIC_KEY": (
        "nonsense",
        "not an elliptic-curve public key; paste the 'Verification Key' shown in SendGrid's "
        "Mail Settings > Signed Event Webhook",
    ),
    "SMTP_URL": ("http://x", "must look like smtp://user:pass@host:587 or smtps://host:465"),
    "FROM_EMAIL": (
        "bad",
        "'bad' is not an email address (An email address must have an @-sign.); "
        "e.g. tips@shop.example",
    ),
    "REPLY_TO": (
        "x@",
        "'x@' is not an email address (There must be something after the @-sign.); "
        "e.g. tips@shop.example",
    ),
    "ALLOWED_ORIGINS": (
        "notanorigin",
        "'notanorigin' is not an origin (no http:// or https://); an origin is "
        "scheme://host[:port], e.g. https://shop.example",
    ),
    "DEFAULT_TIMEZONE": ("Mars/Base", "unknown IANA time zone 'Mars/Base' (e.g. Europe/Berlin)"),
    "SEND_RATE": ("-1", "Input should be greater than or equal to 0 (got '-1')"),
    "CONFIRM_TOKEN_MAX_AGE_DAYS": ("0", "Input should be greater than or equal to 1"),
    "SUBSCRIBE_RATE_LIMIT": (
        "lots",
        "'lots' is not a rate; write e.g. 10/minute, 100/hour or 10/minute;100/day",
    ),
    "MAX_BODY_BYTES": ("10", "Input should be greater than or equal to 1024 (got '10')"),
    "BATCH_SIZE": (
        "many",
        "Input should be a valid integer, unable to parse string as an integer (got 'many')",
    ),
    "MAX_ATTEMPTS": ("0", "Input should be greater than or equal to 1 (got '0')"),
    "LEASE_SECONDS": ("5", "Input should be greater than or equal to 10 (got '5')"),
    "CAMPAIGN_MAX_SCHEDULE_DAYS": ("0", "Input should be greater than or equal to 1 (got '0')"),
    "CAMPAIGN_STALE_HOURS": ("0", "Input should be greater than 0 (got '0')"),
    "WEBHOOK_ALLOW_PRIVATE": (
        "perhaps",
        "Input should be a valid boolean, unable to interpret input (got 'perhaps')",
    ),
    "WEBHOOK_TIMEOUT_SECONDS": ("61", "Input should be less than or equal to 60 (got '61')"),
    "WEBHOOK_CONCURRENCY": ("65", "Input should be less than or equal to 64 (got '65')"),
    "WEBHOOK_BATCH_SIZE": ("0", "Input should be greater than or equal to 1 (got '0')"),
    "WEBHOOK_LEASE_SECONDS": ("9", "Input should be greater than or equal to 10 (got '9')"),
    "LOG_FORMAT": ("xml", "Input should be 'text' or 'json' (got 'xml')"),
    "TRACK_OPENS": (
        "sometimes",
        "Input should be a valid boolean, unable to interpret input (got 'sometimes')",
    ),
    "TRACK_CLICKS": ("2", "Input should be a valid boolean, unable to interpret input (got '2')"),
    "BOUNCE_ADDRESS": (
        "bounces",
        "'bounces' is not an email address (An email address must have an @-sign.); "
        "e.g. bounces@shop.example",
    ),
    "BOUNCE_IMAP_URL": (
        "pop3://x",
        "must look like imaps://user:pass@host/INBOX or imap://host:143/INBOX",
    ),
    "EVENT_INBOX_APPLIED_DAYS": ("0", "Input should be greater than or equal to 1 (got '0')"),
    "EVENT_INBOX_PROBLEM_DAYS": (
        "3651",
        "Input should be less than or equal to 3650 (got '3651')",
    ),
    "SUNSET_DAYS": ("-1", "Input should be greater than or equal to 0 (got '-1')"),
    "SUNSET_MIN_EMAILS": ("0", "Input should be greater than or equal to 1 (got '0')"),
    "SUNSET_GRACE_DAYS": ("0", "Input should be greater than or equal to 1 (got '0')"),
    "HONEYPOT_FIELD": ("", "String should have at least 1 character (got '')"),
    "MARKETING_CAP": (
        "lots",
        "cannot read the cap 'lots': write COUNT/PERIOD with h, d or w, e.g. 1/24h, 2/7d or "
        "1/1w (or off)",
    ),
    "TRUSTED_PROXIES": (
        "10.0.0.300",
        "'10.0.0.300' is not an IP address or CIDR range (e.g. 10.0.0.0/8,192.0.2.7,::1)",
    ),
    "SQLITE_SYNCHRONOUS": ("off", "Input should be 'full' or 'normal' (got 'off')"),
    "API_RATE_LIMIT": (
        "fast",
        "'fast' is not a rate; write e.g. 10/minute, 100/hour or 10/minute;100/day",
    ),
}
# Free text or paths: any value is a value. The paths are checked on disk at start-up
# (newsletter/startup.py, tests/test_startup_cli.py); the keys where they are used.
FREE_FORM = {
    "VAR_DIR",
    "SECRET_KEY",
    "OUTBOX_DIR",
    "SENDGRID_API_KEY",
    "FROM_NAME",
    "POSTAL_ADDRESS",
    "FORM_SECRET",
    "CONTENT_DIR",
    "TEMPLATES_DIR",
    "CRON_FILE",
    "SOURCES_FILE",
}


def test_every_setting_has_a_bad_value_test_or_is_free_form() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert fields == set(BAD_VALUES) | FREE_FORM
    assert not set(BAD_VALUES) & FREE_FORM


@pytest.mark.parametrize(("name", "value", "message"), [(k, *v) for k, v in BAD_VALUES.items()])
def test_each_bad_setting_is_one_line_naming_the_variable(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    variable = f"NEWSLETTER_{name}"
    with pytest.raises(ConfigurationError) as caught:
        read_settings({"NEWSLETTER_VAR_DIR": str(tmp_path), variable: value})
    assert str(caught.value) == f"{variable}: {message}"
    assert caught.value.variable == variable
    assert list(tmp_path.iterdir()) == []  # nothing written for a refused setting


@pytest.mark.parametrize("name", ["SUBSCRIBE_RATE_LIMIT", "API_RATE_LIMIT"])
def test_a_bad_limit_anywhere_in_a_rate_names_the_variable(tmp_path: Path, name: str) -> None:
    """Every limit of ``10/minute;100/day`` is checked, not only the first."""
    variable = f"NEWSLETTER_{name}"
    with pytest.raises(ConfigurationError) as caught:
        read_settings({"NEWSLETTER_VAR_DIR": str(tmp_path), variable: "10/minute;nonsense"})
    assert str(caught.value) == (
        f"{variable}: '10/minute;nonsense' is not a rate; write e.g. 10/minute, 100/hour or "
        "10/minute;100/day"
    )
    assert caught.value.variable == variable


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "bounces+x@shop.example",
            "'bounces+x@shop.example' has a '+': bounces come back to <name>+<id>@<domain>, "
            "so write a plain address such as bounces@shop.example",
        ),
        (
            "a b@shop.example",
            "'a b@shop.example' is not an email address (The email address contains invalid "
            "characters before the @-sign: SPACE.); e.g. bounces@shop.example",
        ),
        (
            "bounces@",
            "'bounces@' is not an email address (There must be something after the @-sign.); "
            "e.g. bounces@shop.example",
        ),
        (
            "bounces@shop..example",
            "'bounces@shop..example' is not an email address (An email address cannot have "
            "two periods in a row.); e.g. bounces@shop.example",
        ),
    ],
)
def test_the_bounce_address_follows_the_from_email_rules(
    tmp_path: Path, value: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        read_settings({"NEWSLETTER_VAR_DIR": str(tmp_path), "NEWSLETTER_BOUNCE_ADDRESS": value})
    assert str(caught.value) == f"NEWSLETTER_BOUNCE_ADDRESS: {message}"


def test_a_good_bounce_address_is_kept_trimmed(tmp_path: Path) -> None:
    environ = {"NEWSLETTER_VAR_DIR": str(tmp_path)}
    assert (
        read_settings({**environ, "NEWSLETTER_BOUNCE_ADDRESS": " b@shop.example "}).bounce_address
        == "b@shop.example"
    )
    assert read_settings({**environ, "NEWSLETTER_BOUNCE_ADDRESS": ""}).bounce_address == ""


@pytest.mark.parametrize(("value", "pragma"), [(None, 2), ("full", 2), ("normal", 1)])
def test_sqlite_commits_are_flushed_to_disk_unless_told_otherwise(
    tmp_path: Path, value: str | None, pragma: int
) -> None:
    """The default survives a power cut (``PRAGMA synchronous`` 2 = FULL: the WAL is flushed
    at every commit); ``normal`` (1) flushes only at checkpoints. Every connection of the
    app's pool gets it."""
    from sqlalchemy import text

    from newsletter.app import App

    environ = {"NEWSLETTER_VAR_DIR": str(tmp_path), "NEWSLETTER_SECRET_KEY": "k"}
    if value is not None:
        environ["NEWSLETTER_SQLITE_SYNCHRONOUS"] = value
    app = App(load_settings(environ))
    try:
        with app.engine.connect() as connection:
            assert connection.execute(text("PRAGMA synchronous")).scalar() == pragma
        first, second = app.engine.raw_connection(), app.engine.raw_connection()
        try:
            for raw in (first, second):  # two connections of the pool, both set up
                cursor = raw.cursor()
                assert cursor.execute("PRAGMA synchronous").fetchone() == (pragma,)
                assert cursor.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            first.close()
            second.close()
    finally:
        app.close()


def test_an_unknown_sqlite_synchronous_mode_is_refused_before_any_file_is_made(
    tmp_path: Path,
) -> None:
    from newsletter.db import DatabaseError, make_engine

    with pytest.raises(DatabaseError, match=r"unknown SQLite synchronous mode 'off'.*full"):
        make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}", sqlite_synchronous="off")
    assert not (tmp_path / "sub").exists()


@pytest.mark.parametrize("version", [(3, 34, 1), (3, 31, 0), (2, 99, 99)])
def test_an_sqlite_library_without_returning_is_refused_with_what_to_do(
    version: tuple[int, int, int],
) -> None:
    from newsletter.db import DatabaseError, check_sqlite_version

    with pytest.raises(DatabaseError) as caught:
        check_sqlite_version(version)
    found = ".".join(map(str, version))
    assert f"SQLite is {found}; newsletter needs 3.35.0 or newer" in str(caught.value)
    assert "NEWSLETTER_DATABASE_URL" in str(caught.value)


@pytest.mark.parametrize("version", [(3, 35, 0), (3, 35, 5), (3, 40, 1), (4, 0, 0)])
def test_sqlite_35_and_newer_are_accepted(version: tuple[int, int, int]) -> None:
    from newsletter.db import check_sqlite_version

    check_sqlite_version(version)


def test_problem_bodies_are_kept_at_least_as_long_as_applied_ones(tmp_path: Path) -> None:
    """The two inbox retentions are checked together: a shorter problem retention is a
    start-up error naming the variable to raise."""
    environ = {
        "NEWSLETTER_VAR_DIR": str(tmp_path),
        "NEWSLETTER_EVENT_INBOX_APPLIED_DAYS": "30",
        "NEWSLETTER_EVENT_INBOX_PROBLEM_DAYS": "14",
    }
    with pytest.raises(ConfigurationError) as caught:
        read_settings(environ)
    assert str(caught.value) == (
        "NEWSLETTER_EVENT_INBOX_PROBLEM_DAYS: 14 is shorter than "
        "NEWSLETTER_EVENT_INBOX_APPLIED_DAYS (30): a body kept with a problem is kept at "
        "least as long as an applied one; raise it"
    )
    same = read_settings({**environ, "NEWSLETTER_EVENT_INBOX_PROBLEM_DAYS": "30"})
    assert (same.event_inbox_applied_days, same.event_inbox_problem_days) == (30, 30)
    defaults = read_settings({"NEWSLETTER_VAR_DIR": str(tmp_path)})
    assert (defaults.event_inbox_applied_days, defaults.event_inbox_problem_days) == (7, 90)
