"""API keys: create (the secret is shown once), list, revoke, and authenticate a request.

Only the SHA-256 of a key is stored. A key is 32 random bytes in URL-safe base64 after a
``nl_`` prefix: with that much entropy a fast hash is as safe as a slow one, and lets a
request be authenticated with one indexed lookup. Keys are never logged; messages name a
key by its name or its first characters (``prefix``), never by the secret.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.db import transaction
from newsletter.errors import ApiKeyError
from newsletter.models import ApiKey, ApiKeyScope

KEY_PREFIX = "nl_"
SHOWN_CHARACTERS = 10
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
LAST_USED_RESOLUTION = timedelta(minutes=5)


@dataclass(frozen=True)
class ApiKeyView:
    name: str
    scope: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at is not None else "active"


@dataclass(frozen=True)
class Caller:
    """The key a request was authenticated with."""

    id: int
    name: str
    scope: ApiKeyScope

    def may(self, needed: ApiKeyScope) -> bool:
        return needed is ApiKeyScope.READ or self.scope is ApiKeyScope.WRITE


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _view(key: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        key.name, key.scope, key.prefix, key.created_at, key.last_used_at, key.revoked_at
    )


def create_key(app: App, name: str, *, scope: str, now: datetime) -> tuple[ApiKeyView, str]:
    """A new key; returns its view and the secret (the only time the secret exists)."""
    if not NAME.match(name):
        raise ApiKeyError(
            f"bad key name {name[:60]!r}: use letters, digits, '.', '_' or '-' "
            "(e.g. shop-checkout), at most 100 characters"
        )
    try:
        chosen = ApiKeyScope(scope)
    except ValueError:
        raise ApiKeyError(f"unknown scope {scope!r}; use read or write") from None
    secret = new_secret()
    with transaction(app.sessions) as session:
        if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
            raise ApiKeyError(
                f"an API key named {name!r} exists already (revoked keys keep their name); "
                "choose another name or run `newsletter api-key list`"
            )
        key = ApiKey(
            name=name,
            scope=chosen.value,
            key_hash=hash_key(secret),
            prefix=secret[:SHOWN_CHARACTERS],
            created_at=now,
        )
        session.add(key)
        session.flush()
        return _view(key), secret


def list_keys(app: App) -> list[ApiKeyView]:
    with app.sessions() as session:
        return [_view(k) for k in session.scalars(select(ApiKey).order_by(ApiKey.name))]


def revoke_key(app: App, name: str, *, now: datetime) -> ApiKeyView:
    """Revoke at once: the next request with this key is answered 401."""
    with transaction(app.sessions) as session:
        key = session.scalar(select(ApiKey).where(ApiKey.name == name).with_for_update())
        if key is None:
            raise ApiKeyError(f"no API key named {name!r}; run `newsletter api-key list`")
        if key.revoked_at is None:
            key.revoked_at = now
        return _view(key)


def authenticate(session: Session, secret: str, *, now: datetime) -> Caller | None:
    """The active key whose hash matches ``secret``, else None. Notes the last use
    (at most every few minutes, so reads rarely write). The caller commits."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
    if key is None or key.revoked_at is not None:
        return None
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return Caller(key.id, key.name, ApiKeyScope(key.scope))
