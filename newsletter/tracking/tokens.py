"""Signed tracking tokens (pure): they name a delivery and, for clicks, a link index.

Bound to their purpose by the salt (an open token is no click token, neither is an
unsubscribe token) and signed with the newest secret key; every key verifies. They carry
no URL: the click target is looked up from the links stored for that email, so a forged
or altered token can never redirect anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from itsdangerous import BadData, URLSafeSerializer

from newsletter.errors import TokenError

OPEN = "newsletter.track.open"
CLICK = "newsletter.track.click"
TRAP_INDEX = -1  # the hidden link only machines follow
MAX_ID = 2**63 - 1
MAX_INDEX = 10_000


@dataclass(frozen=True)
class ClickToken:
    delivery_id: int
    link_index: int

    @property
    def trap(self) -> bool:
        return self.link_index == TRAP_INDEX


def _serializer(keys: Sequence[str], salt: str) -> URLSafeSerializer:
    if not keys:
        raise ValueError("at least one secret key is required")
    return URLSafeSerializer(list(reversed(keys)), salt=salt)


def make_open_token(delivery_id: int, *, keys: Sequence[str]) -> str:
    return str(_serializer(keys, OPEN).dumps(delivery_id))


def make_click_token(delivery_id: int, link_index: int, *, keys: Sequence[str]) -> str:
    return str(_serializer(keys, CLICK).dumps([delivery_id, link_index]))


def read_open_token(token: str, *, keys: Sequence[str]) -> int:
    """The delivery id; ``TokenError`` for anything forged, altered or malformed."""
    value = _load(token, keys, OPEN)
    if not _is_id(value):
        raise TokenError("this tracking link is not valid")
    assert isinstance(value, int)
    return value


def read_click_token(token: str, *, keys: Sequence[str]) -> ClickToken:
    value = _load(token, keys, CLICK)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not _is_id(value[0])
        or type(value[1]) is not int
        or not TRAP_INDEX <= value[1] < MAX_INDEX
    ):
        raise TokenError("this tracking link is not valid")
    return ClickToken(value[0], value[1])


def _load(token: str, keys: Sequence[str], salt: str) -> object:
    if len(token) > 200:
        raise TokenError("this tracking link is not valid")
    try:
        return _serializer(keys, salt).loads(token)
    except (BadData, UnicodeError, ValueError) as exc:
        raise TokenError("this tracking link is not valid") from exc


def _is_id(value: object) -> bool:
    return type(value) is int and 0 < value <= MAX_ID
