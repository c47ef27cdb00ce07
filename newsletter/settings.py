"""Settings from the environment (``NEWSLETTER_`` prefix, a ``.env`` file is read too).

Validated once at start-up; a bad value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from newsletter.errors import ConfigurationError
from newsletter.zones import find_zone

PREFIX = "NEWSLETTER_"


class Settings(BaseSettings):
    """Every knob of the service. Field ``foo`` is read from ``NEWSLETTER_FOO``."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_file=".env",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    var_dir: Path = Path("var")
    database_url: str = ""  # default: sqlite:///<var_dir>/newsletter.db
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = ""  # comma-separated: newest first, older keys still verify
    mail_backend: Literal["outbox", "sendgrid", "smtp"] = "outbox"
    outbox_dir: Path | None = None  # default: <var_dir>/outbox
    sendgrid_api_key: str = Field(
        default="",
        validation_alias=AliasChoices("NEWSLETTER_SENDGRID_API_KEY", "SENDGRID_API_KEY"),
    )
    sendgrid_api_url: str = "https://api.sendgrid.com"
    sendgrid_webhook_public_key: str = ""
    smtp_url: str = ""
    from_email: str = "newsletter@example.com"
    from_name: str = "Newsletter"
    reply_to: str = ""
    postal_address: str = ""
    allowed_origins: str = ""  # comma-separated origins, e.g. https://shop.example
    form_secret: str = ""
    default_timezone: str = "UTC"
    send_rate: float = Field(default=0.0, ge=0)  # messages per second, 0 = no cap
    content_dir: Path = Path("content")
    templates_dir: Path = Path("templates/emails")
    cron_file: Path = Path("cron.yaml")
    confirm_token_max_age_days: int = Field(default=7, ge=1)
    subscribe_rate_limit: str = "10/minute"  # per IP, `limits` syntax
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    batch_size: int = Field(default=500, ge=1, le=10000)
    max_attempts: int = Field(default=6, ge=1)
    lease_seconds: int = Field(default=300, ge=10)
    campaign_max_schedule_days: int = Field(default=365, ge=1)
    campaign_stale_hours: float = Field(default=6.0, gt=0)
    api_rate_limit: str = "120/minute"  # per REST API key, `limits` syntax

    @field_validator("api_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate such as 120/minute") from None
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if find_zone(value) is None:
            raise ValueError(f"unknown IANA time zone {value[:64]!r} (e.g. Europe/Berlin)")
        return value

    @field_validator("base_url", "sendgrid_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError(
                f"must be a sqlite:/// or postgresql+psycopg:// URL, got {value.split(':')[0]!r}"
            )
        if value.startswith("postgres://"):
            return "postgresql+psycopg://" + value.removeprefix("postgres://")
        if value.startswith("postgresql://"):
            return "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str) -> str:
        if value and not value.startswith(("smtp://", "smtps://")):
            raise ValueError("must look like smtp://user:pass@host:587 or smtps://host:465")
        return value

    # ---- derived values -------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'newsletter.db'}"

    @property
    def effective_outbox_dir(self) -> Path:
        return self.outbox_dir or self.var_dir / "outbox"

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """Newest first; every key verifies, only the first signs."""
        return tuple(k.strip() for k in self.secret_key.split(",") if k.strip())

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())


def _variable_for(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "?"
    if name.isupper():
        return name
    return PREFIX + name.upper()


def load_settings(
    environ: Mapping[str, str] | None = None, *, env_file: str | None = ".env"
) -> Settings:
    """Read and validate settings; raise ``ConfigurationError`` naming the variable.

    ``environ`` replaces ``os.environ`` (tests pass a dict). A missing ``SECRET_KEY`` is
    generated once and kept in ``<var_dir>/secret_key`` (with a warning on stderr).
    """
    source = dict(os.environ if environ is None else environ)
    values = {k[len(PREFIX) :].lower(): v for k, v in source.items() if k.startswith(PREFIX)}
    if "SENDGRID_API_KEY" in source and "sendgrid_api_key" not in values:
        values["sendgrid_api_key"] = source["SENDGRID_API_KEY"]
    try:
        if environ is None:
            settings = Settings(_env_file=env_file)
        else:
            settings = Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigurationError(_variable_for(first["loc"]), first["msg"]) from None
    if settings.mail_backend == "smtp" and not settings.smtp_url:
        raise ConfigurationError(PREFIX + "SMTP_URL", "required when NEWSLETTER_MAIL_BACKEND=smtp")
    if settings.mail_backend == "sendgrid" and not settings.sendgrid_api_key:
        raise ConfigurationError(
            PREFIX + "SENDGRID_API_KEY", "required when NEWSLETTER_MAIL_BACKEND=sendgrid"
        )
    if not settings.secret_keys:
        settings = settings.model_copy(update={"secret_key": _kept_secret(settings.var_dir)})
    return settings


def _kept_secret(var_dir: Path) -> str:
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    print(
        f"warning: NEWSLETTER_SECRET_KEY is not set; generated one and kept it in {path}",
        file=sys.stderr,
    )
    return key
