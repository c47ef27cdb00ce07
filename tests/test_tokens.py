"""Signed tokens (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsletter.errors import TokenError, TokenExpiredError
from newsletter.tokens import (
    make_confirm_token,
    make_unsubscribe_token,
    read_confirm_token,
    read_unsubscribe_token,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WEEK = timedelta(days=7)


@pytest.mark.parametrize(
    ("age", "ok"),
    [
        (timedelta(0), True),
        (timedelta(days=6, hours=23), True),
        (timedelta(days=7, seconds=1), False),
    ],
    ids=["fresh", "almost-expired", "expired"],
)
def test_confirm_token_expires(age: timedelta, ok: bool) -> None:
    token = make_confirm_token("abc123", keys=["k"], now=T0)
    if ok:
        assert read_confirm_token(token, keys=["k"], now=T0 + age, max_age=WEEK) == "abc123"
    else:
        with pytest.raises(TokenExpiredError, match="expired"):
            read_confirm_token(token, keys=["k"], now=T0 + age, max_age=WEEK)


def test_confirm_token_from_an_old_key_still_verifies() -> None:
    token = make_confirm_token("abc", keys=["old"], now=T0)
    assert read_confirm_token(token, keys=["new", "old"], now=T0, max_age=WEEK) == "abc"


def test_new_tokens_are_signed_with_the_newest_key() -> None:
    token = make_unsubscribe_token("abc", keys=["new", "old"])
    assert read_unsubscribe_token(token, keys=["new"]) == "abc"
    with pytest.raises(TokenError):
        read_unsubscribe_token(token, keys=["old"])


def test_unsubscribe_tokens_never_expire() -> None:
    token = make_unsubscribe_token("abc", keys=["k"])
    assert read_unsubscribe_token(token, keys=["k"]) == "abc"


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "ImFiYyI.AAAA", "ImFiYyI.x.y"],
    ids=["empty", "word", "dots", "short-sig", "extra"],
)
def test_garbage_tokens_raise_token_error(token: str) -> None:
    with pytest.raises(TokenError):
        read_unsubscribe_token(token, keys=["k"])
    with pytest.raises(TokenError):
        read_confirm_token(token, keys=["k"], now=T0, max_age=WEEK)


def test_tokens_are_bound_to_their_purpose() -> None:
    confirm = make_confirm_token("abc", keys=["k"], now=T0)
    unsub = make_unsubscribe_token("abc", keys=["k"])
    with pytest.raises(TokenError):
        read_unsubscribe_token(confirm, keys=["k"])
    with pytest.raises(TokenError):
        read_confirm_token(unsub, keys=["k"], now=T0, max_age=WEEK)
