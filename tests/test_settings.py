"""Settings: validated at start-up, errors name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.errors import ConfigurationError
from newsletter.settings import load_settings


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
