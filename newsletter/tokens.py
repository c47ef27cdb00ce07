"""Signed tokens for confirm and unsubscribe links (pure: the time is a parameter).

A token signs the subscriber's random ``public_id`` and is bound to its purpose by the
salt. Confirm tokens carry a timestamp and expire; unsubscribe tokens never expire.
``keys`` is newest first: only the newest signs, every key verifies (secret rotation).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from itsdangerous import (
    BadData,
    BadSignature,
    SignatureExpired,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)

from newsletter.errors import TokenError, TokenExpiredError

CONFIRM = "newsletter.confirm"
UNSUBSCRIBE = "newsletter.unsubscribe"
KEEP = "newsletter.keep"


def _signer_at(now: datetime) -> type[TimestampSigner]:
    class _FixedClockSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(now.timestamp())

    return _FixedClockSigner


def _oldest_first(keys: Sequence[str]) -> list[str]:
    if not keys:
        raise ValueError("at least one secret key is required")
    return list(reversed(keys))


def make_confirm_token(public_id: str, *, keys: Sequence[str], now: datetime) -> str:
    serializer = URLSafeTimedSerializer(_oldest_first(keys), salt=CONFIRM, signer=_signer_at(now))
    return serializer.dumps(public_id)


def read_confirm_token(
    token: str, *, keys: Sequence[str], now: datetime, max_age: timedelta
) -> str:
    """Return the public id; raise ``TokenExpiredError`` or ``TokenError``."""
    serializer = URLSafeTimedSerializer(_oldest_first(keys), salt=CONFIRM, signer=_signer_at(now))
    try:
        value = serializer.loads(token, max_age=int(max_age.total_seconds()))
    except SignatureExpired as exc:
        raise TokenExpiredError(
            "this confirmation link has expired; subscribe again to get a new one"
        ) from exc
    except (BadSignature, BadData) as exc:
        raise TokenError("this confirmation link is not valid; subscribe again") from exc
    return _public_id(value)


def make_unsubscribe_token(public_id: str, *, keys: Sequence[str]) -> str:
    return URLSafeSerializer(_oldest_first(keys), salt=UNSUBSCRIBE).dumps(public_id)


def read_unsubscribe_token(token: str, *, keys: Sequence[str]) -> str:
    try:
        value = URLSafeSerializer(_oldest_first(keys), salt=UNSUBSCRIBE).loads(token)
    except (BadSignature, BadData) as exc:
        raise TokenError(
            "this unsubscribe link is not valid; use the link from your latest email"
        ) from exc
    return _public_id(value)


def _public_id(value: object) -> str:
    if not isinstance(value, str) or not value.isalnum() or len(value) > 64:
        raise TokenError("this link is not valid")
    return value


def make_keep_token(public_id: str, *, keys: Sequence[str]) -> str:
    """The sunset email's "keep me subscribed" link; never expires, like unsubscribe."""
    return URLSafeSerializer(_oldest_first(keys), salt=KEEP).dumps(public_id)


def read_keep_token(token: str, *, keys: Sequence[str]) -> str:
    try:
        value = URLSafeSerializer(_oldest_first(keys), salt=KEEP).loads(token)
    except (BadSignature, BadData) as exc:
        raise TokenError("this link is not valid; use the link from your latest email") from exc
    return _public_id(value)
