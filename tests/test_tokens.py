"""Signed tokens (pure)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeSerializer

from newsletter.errors import TokenError, TokenExpiredError
from newsletter.tokens import (
    KEEP,
    UNSUBSCRIBE,
    make_confirm_token,
    make_keep_token,
    make_unsubscribe_token,
    read_confirm_token,
    read_keep_token,
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
    """An unsubscribe token carries no timestamp (payload.signature), so no clock can expire it;
    one made years ago (pinned below) still reads, with no ``now`` involved."""
    token = make_unsubscribe_token("abc", keys=["k"])
    assert token.count(".") == 1
    assert read_unsubscribe_token(token, keys=["k"]) == "abc"
    assert read_unsubscribe_token(PINNED_UNSUBSCRIBE, keys=PINNED_KEYS) == "a1B2c3"


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


# Known answers: tokens made on 2026-12-01 with these keys. If a salt, the serializer or the
# signing scheme changes, every confirm and unsubscribe link already mailed breaks: these fail.
PINNED_KEYS = ["known-answer-key", "older"]
PINNED_AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PINNED_CONFIRM = "ImExQjJjMyI.aw6MkA.IS1O7v-Mui1tb0oX4nKMJSxIQrs"
PINNED_UNSUBSCRIBE = "ImExQjJjMyI.KJLb-jdKlcMks-pI-VkqGSu9e5s"


def test_tokens_made_today_keep_their_exact_form() -> None:
    assert make_confirm_token("a1B2c3", keys=PINNED_KEYS, now=PINNED_AT) == PINNED_CONFIRM
    assert make_unsubscribe_token("a1B2c3", keys=PINNED_KEYS) == PINNED_UNSUBSCRIBE


def test_tokens_mailed_today_still_read_after_a_key_rotation() -> None:
    rotated = ["brand-new-key", *PINNED_KEYS]
    later = PINNED_AT + timedelta(days=6)
    assert read_confirm_token(PINNED_CONFIRM, keys=rotated, now=later, max_age=WEEK) == "a1B2c3"
    assert read_unsubscribe_token(PINNED_UNSUBSCRIBE, keys=rotated) == "a1B2c3"


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_confirm_token("abc", keys=[], now=T0),
        lambda: make_unsubscribe_token("abc", keys=[]),
        lambda: read_confirm_token("x.y.z", keys=[], now=T0, max_age=WEEK),
        lambda: read_unsubscribe_token("x.y", keys=[]),
    ],
    ids=["make-confirm", "make-unsubscribe", "read-confirm", "read-unsubscribe"],
)
def test_no_keys_is_refused_not_signed_with_nothing(make: Callable[[], str]) -> None:
    with pytest.raises(ValueError, match="at least one secret key"):
        make()


def _signed(value: object) -> str:
    """A validly signed unsubscribe token around any JSON value (what a key holder could make)."""
    return URLSafeSerializer(["k"], salt=UNSUBSCRIBE).dumps(value)


@pytest.mark.parametrize(
    "value",
    ["a/b", "x" * 65, 12345, "", None, ["abc"], "abc def", "abc\n"],
    ids=["slash", "65-chars", "number", "empty", "null", "list", "space", "newline"],
)
def test_public_id_inside_a_signed_token_is_validated(value: object) -> None:
    with pytest.raises(TokenError, match="not valid"):
        read_unsubscribe_token(_signed(value), keys=["k"])


@pytest.mark.parametrize("value", ["x" * 64, "A", "a1B2c3"], ids=["64-chars", "one", "mixed"])
def test_public_ids_up_to_64_alphanumerics_are_accepted(value: str) -> None:
    assert read_unsubscribe_token(_signed(value), keys=["k"]) == value


PINNED_KEEP = "ImExQjJjMyI.rfAUUqsyYdNb9SVKB9tG6QRGlo0"


def test_keep_tokens_are_pinned_round_trip_and_bound_to_their_purpose() -> None:
    """The sunset email's keep link: known answer, rotation, and never an unsubscribe."""
    assert make_keep_token("a1B2c3", keys=PINNED_KEYS) == PINNED_KEEP
    assert read_keep_token(PINNED_KEEP, keys=["new", *PINNED_KEYS]) == "a1B2c3"
    with pytest.raises(TokenError):
        read_unsubscribe_token(PINNED_KEEP, keys=PINNED_KEYS)
    with pytest.raises(TokenError):
        read_keep_token(PINNED_UNSUBSCRIBE, keys=PINNED_KEYS)
    with pytest.raises(TokenError, match="not valid"):
        read_keep_token(URLSafeSerializer(["k"], salt=KEEP).dumps("a/b"), keys=["k"])


@pytest.mark.parametrize(
    "public_id",
    [
        "a1B2c3",
        "x" * 64,
        "ab" * 20,
        "a" * 10,
        "a" * 11,
        "a" * 12,
        "",
        "0",
        "A-b_c.d~e",
        "a/b",
        'say "hi"',
        "é-ü",
        "tab\there",
    ],
    ids=[
        "mixed",
        "compressible-64",
        "compressible-40",
        # zlib's output is as long as the JSON, one byte and two bytes shorter: compressed
        # only when at least two bytes shorter (the boundary itsdangerous draws)
        "compressed-same-length",
        "compressed-1-shorter",
        "compressed-2-shorter",
        "empty",
        "digit",
        "url-safe-punctuation",
        "slash",
        "quotes",
        "non-ascii",
        "control",
    ],
)
@pytest.mark.parametrize("keys", [["k"], ["newest", "older"]], ids=["one-key", "rotated"])
def test_the_fast_signer_gives_exactly_what_itsdangerous_gives(
    public_id: str, keys: list[str]
) -> None:
    """Unsubscribe and keep tokens skip itsdangerous's JSON encoder and HMAC wrapper on the
    delivery path: byte for byte the serializer's own ``dumps`` (compressed or not)."""
    for salt, make in ((UNSUBSCRIBE, make_unsubscribe_token), (KEEP, make_keep_token)):
        expected = URLSafeSerializer(list(reversed(keys)), salt=salt).dumps(public_id)
        assert make(public_id, keys=keys) == expected
