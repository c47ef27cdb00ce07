"""Signed tokens for confirm and unsubscribe links (pure: the time is a parameter).

A token signs the subscriber's random ``public_id`` and is bound to its purpose by the
salt. Confirm tokens carry a timestamp and expire; unsubscribe tokens never expire.
``keys`` is newest first: only the newest signs, every key verifies (secret rotation).
"""

from __future__ import annotations

import hmac
import re
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache

from itsdangerous import (
    BadData,
    BadSignature,
    SignatureExpired,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_encode
from itsdangerous.signer import HMACAlgorithm

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


@lru_cache(maxsize=64)
def _never_expiring(keys: tuple[str, ...], salt: str) -> Callable[[str], str]:
    """``URLSafeSerializer(keys, salt=salt).dumps``, with the key derived once.

    itsdangerous builds a signer and derives the HMAC key again on every ``dumps``; the
    delivery path signs two tokens per email. This signs the very same payload with the
    very same key and algorithm (``test_tokens`` pins the result to ``dumps``).
    """
    serializer = URLSafeSerializer(_oldest_first(keys), salt=salt)
    signer = serializer.make_signer(salt)
    key = signer.derive_key()  # the newest key: the one ``dumps`` signs with
    sep, algorithm = signer.sep, signer.algorithm
    assert isinstance(algorithm, HMACAlgorithm)  # the default: HMAC-SHA1
    digest = algorithm.digest_method().name

    def dumps(public_id: str) -> str:
        if _PLAIN.fullmatch(public_id):
            # JSON of a string JSON needs not escape is the string in quotes; the
            # serializer then compresses it when that is shorter, as ``dump_payload`` does.
            json = b'"' + public_id.encode() + b'"'
            compressed = zlib.compress(json)
            if len(compressed) < len(json) - 1:
                payload = b"." + base64_encode(compressed)
            else:
                payload = base64_encode(json)
        else:
            payload = serializer.dump_payload(public_id)
        return (payload + sep + base64_encode(hmac.digest(key, payload, digest))).decode()

    return dumps


# Characters JSON writes as they are (no escape) and ASCII, so the JSON is one byte each.
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")


def make_unsubscribe_token(public_id: str, *, keys: Sequence[str]) -> str:
    return _never_expiring(tuple(keys), UNSUBSCRIBE)(public_id)


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
    return _never_expiring(tuple(keys), KEEP)(public_id)


def read_keep_token(token: str, *, keys: Sequence[str]) -> str:
    try:
        value = URLSafeSerializer(_oldest_first(keys), salt=KEEP).loads(token)
    except (BadSignature, BadData) as exc:
        raise TokenError("this link is not valid; use the link from your latest email") from exc
    return _public_id(value)
