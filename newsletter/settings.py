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

from newsletter.client_ip import Network, parse_networks
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
    # SQLite only: ``full`` flushes the WAL at every commit (survives a power cut), ``normal``
    # only at checkpoints (newsletter.db.make_engine).
    sqlite_synchronous: Literal["full", "normal"] = "full"
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
    # Outgoing webhooks (newsletter/webhooks/).
    webhook_allow_private: bool = False  # allow loopback/link-local/private receivers
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)  # per request
    webhook_concurrency: int = Field(default=4, ge=1, le=64)  # endpoints served at once
    webhook_batch_size: int = Field(default=100, ge=1, le=10000)  # events per endpoint claim
    webhook_lease_seconds: int = Field(default=120, ge=10)  # per-endpoint claim
    log_format: Literal["text", "json"] = "text"
    # The SendGrid event inbox (newsletter/events/inbox.py): the ``events`` job deletes
    # applied bodies (empty, with their counts) and bodies kept with a problem after these.
    event_inbox_applied_days: int = Field(default=7, ge=1, le=3650)
    event_inbox_problem_days: int = Field(default=90, ge=1, le=3650)
    # Tracking of our own (issue 15): off by default, see README "Tracking and privacy".
    track_opens: bool = False
    track_clicks: bool = False
    bounce_address: str = ""  # e.g. bounces@shop.example: VERP return path bounces+<id>@...
    bounce_imap_url: str = ""  # imaps://user:pass@host/INBOX?unparsed=Unparsed
    sunset_days: int = Field(default=0, ge=0)  # 0 = the sunset policy is off
    sunset_min_emails: int = Field(default=5, ge=1)
    sunset_grace_days: int = Field(default=14, ge=1)
    sources_file: Path = Path("sources.yaml")  # form sources: POST /subscribe/{source}
    honeypot_field: str = Field(default="website", min_length=1, max_length=64)
    marketing_cap: str = "1/24h"  # newsletter.attention.cap: COUNT/PERIOD, or off

    @field_validator("marketing_cap")
    @classmethod
    def _cap(cls, value: str) -> str:
        from newsletter.attention.cap import parse_cap

        parse_cap(value)  # ValueError -> "NEWSLETTER_MARKETING_CAP: cannot read the cap ..."
        return value.strip()

    # comma-separated IPs/CIDRs whose X-Forwarded-For is believed (empty: none)
    trusted_proxies: str = ""
    api_rate_limit: str = "120/minute"  # per REST API key, `limits` syntax

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

    @field_validator("bounce_address")
    @classmethod
    def _bounce_address(cls, value: str) -> str:
        if not value.strip():
            return ""
        address = check_email(value, example="bounces@shop.example")
        if "+" in address.rpartition("@")[0]:
            raise ValueError(
                f"{value[:64]!r} has a '+': bounces come back to <name>+<id>@<domain>, so "
                "write a plain address such as bounces@shop.example"
            )
        return address

    @field_validator("sendgrid_webhook_public_key")
    @classmethod
    def _public_key(cls, value: str) -> str:
        if not value.strip():
            return ""
        from newsletter.events.signature import WebhookVerifier

        try:
            WebhookVerifier(value.strip())
        except ConfigurationError as exc:
            raise ValueError(exc.problem) from None
        return value

    @field_validator("bounce_imap_url")
    @classmethod
    def _imap_url(cls, value: str) -> str:
        if value and not value.startswith(("imap://", "imaps://")):
            raise ValueError("must look like imaps://user:pass@host/INBOX or imap://host:143/INBOX")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str) -> str:
        if value and not value.startswith(("smtp://", "smtps://")):
            raise ValueError("must look like smtp://user:pass@host:587 or smtps://host:465")
        return value

    @field_validator("subscribe_rate_limit", "api_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        return check_rate_limit(value)

    @field_validator("from_email")
    @classmethod
    def _from_email(cls, value: str) -> str:
        return check_email(value)

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str) -> str:
        return check_email(value) if value.strip() else ""

    @field_validator("allowed_origins")
    @classmethod
    def _allowed_origins(cls, value: str) -> str:
        return ",".join(check_origin(part) for part in value.split(",") if part.strip())

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # raises ValueError naming the bad entry
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
    def trusted_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())


def _variable_for(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "?"
    if name.isupper():
        return name
    return PREFIX + name.upper()


# Fields whose value is never repeated in a message (it may be, or contain, a secret).
_SECRET_WORDS = ("secret", "key", "password", "token", "url")


def configuration_error(exc: ValidationError) -> ConfigurationError:
    """The one place a pydantic ``ValidationError`` becomes a one-line message.

    Every problem is named by its environment variable (``NEWSLETTER_FOO: problem``);
    several are joined with ``; ``. To validate a new setting, give its field a pydantic
    constraint or a ``field_validator`` that raises ``ValueError("what is wrong with the
    value; what to write instead")``; a ``model_validator(mode="after")`` checking several
    settings together starts its message with the variable: ``"NEWSLETTER_FOO: ..."``.
    A validator's ``ValueError`` text is used as it is
    (without pydantic's "Value error, " prefix); pydantic's own messages get the value
    that was given, except for settings that may hold a secret.
    """
    parts: list[str] = []
    variables: list[str] = []
    for error in exc.errors():
        variable = _variable_for(tuple(error["loc"]))
        message = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"] and message.startswith(PREFIX) and ": " in message:
            # a model validator (several settings together) names its variable itself:
            # raise ValueError("NEWSLETTER_FOO: needs NEWSLETTER_BAR ...")
            variable, message = message.split(": ", 1)
        given = error.get("input")
        name = variable.removeprefix(PREFIX).lower()
        if (
            error["type"] != "value_error"
            and isinstance(given, str)
            and not any(word in name for word in _SECRET_WORDS)
        ):
            message += f" (got {given[:64]!r})"
        variables.append(variable)
        parts.append(message if not parts else f"{variable}: {message}")
    return ConfigurationError(variables[0] if variables else PREFIX, "; ".join(parts))


def check_rate_limit(value: str) -> str:
    """A ``limits`` rate such as ``10/minute``, ``100 per hour`` or ``5/second;100/day``."""
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ValueError(
            f"{value[:64]!r} is not a rate; write e.g. 10/minute, 100/hour or 10/minute;100/day"
        ) from None
    return value


def check_email(value: str, *, example: str = "tips@shop.example") -> str:
    """A syntactically valid address (no DNS lookup), as written."""
    from newsletter.addresses import normalize_email
    from newsletter.errors import InvalidEmailError

    try:
        normalize_email(value)
    except InvalidEmailError as exc:
        raise ValueError(
            f"{value[:64]!r} is not an email address ({exc.reason}); e.g. {example}"
        ) from None
    return value.strip()


def check_origin(value: str) -> str:
    """An origin: ``scheme://host[:port]`` with scheme http or https, nothing after it."""
    from urllib.parse import urlsplit

    shown = repr(value.strip()[:64])
    text = value.strip().rstrip("/")
    hint = "an origin is scheme://host[:port], e.g. https://shop.example"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{shown} is not an origin; {hint}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{shown} is not an origin (no http:// or https://); {hint}")
    if not parts.hostname:
        raise ValueError(f"{shown} is not an origin (no host); {hint}")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{shown} is not an origin (it has more than a host); {hint}")
    default = 443 if parts.scheme == "https" else 80  # browsers send Origin without it
    host = parts.hostname + (f":{port}" if port is not None and port != default else "")
    return f"{parts.scheme}://{host}"


def load_settings(
    environ: Mapping[str, str] | None = None, *, env_file: str | None = ".env"
) -> Settings:
    """Read and validate settings; raise ``ConfigurationError`` naming the variable.

    ``environ`` replaces ``os.environ`` (tests pass a dict). A missing ``SECRET_KEY`` is
    generated once and kept in ``<var_dir>/secret_key`` (with a warning on stderr).
    """
    return keep_secret_key(read_settings(environ, env_file=env_file))


def read_settings(
    environ: Mapping[str, str] | None = None, *, env_file: str | None = ".env"
) -> Settings:
    """Read and validate settings without writing anything (no secret key is generated)."""
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
        raise configuration_error(exc) from None
    if settings.event_inbox_problem_days < settings.event_inbox_applied_days:
        raise ConfigurationError(
            PREFIX + "EVENT_INBOX_PROBLEM_DAYS",
            f"{settings.event_inbox_problem_days} is shorter than "
            f"{PREFIX}EVENT_INBOX_APPLIED_DAYS ({settings.event_inbox_applied_days}): a body "
            "kept with a problem is kept at least as long as an applied one; raise it",
        )
    if settings.mail_backend == "smtp" and not settings.smtp_url:
        raise ConfigurationError(PREFIX + "SMTP_URL", "required when NEWSLETTER_MAIL_BACKEND=smtp")
    if settings.mail_backend == "sendgrid" and not settings.sendgrid_api_key:
        raise ConfigurationError(
            PREFIX + "SENDGRID_API_KEY", "required when NEWSLETTER_MAIL_BACKEND=sendgrid"
        )
    return settings


def keep_secret_key(settings: Settings) -> Settings:
    """``settings`` with a secret key: the configured one, else one kept under ``var_dir``."""
    if settings.secret_keys:
        return settings
    try:
        kept = _kept_secret(settings.var_dir)
    except OSError as exc:
        raise ConfigurationError(
            PREFIX + "SECRET_KEY",
            f"not set, and no key can be kept in {str(settings.var_dir)!r} "
            f"({exc.strerror or exc}); set it, or make NEWSLETTER_VAR_DIR writable",
        ) from None
    return settings.model_copy(update={"secret_key": kept})


def read_secret_key(settings: Settings) -> Settings:
    """``settings`` with the key kept under ``var_dir`` if none is set; nothing is created."""
    if settings.secret_keys:
        return settings
    path = settings.var_dir / "secret_key"
    try:
        kept = path.read_text().strip() if path.is_file() else ""
    except OSError as exc:
        raise ConfigurationError(
            PREFIX + "SECRET_KEY",
            f"not set, and the kept key {str(path)!r} cannot be read ({exc.strerror or exc}); "
            "set it, or make the file readable",
        ) from None
    return settings.model_copy(update={"secret_key": kept}) if kept else settings


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
