"""JSON from strangers, parsed with bounds: depth, integer digits, no lone surrogates, no NUL.

Python's ``json`` would recurse until ``RecursionError`` on deep nesting, turn a
4,300-digit integer into a ``ValueError`` deep inside, and accept ``"\\ud800"`` and
``"\\u0000"`` as strings that later break the database or the mailer. Each of these is a
broken body: ``BodyError`` (a 400) before anything is looked at.
"""

from __future__ import annotations

import json
import re
from typing import Any

from newsletter.errors import NewsletterError

MAX_DEPTH = 32
MAX_INT_DIGITS = 40
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


class BodyError(NewsletterError, ValueError):
    """A body that cannot be read as the sender's format (answered 400)."""


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting of a JSON text, strings skipped."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BodyError(f"the body has an integer longer than {MAX_INT_DIGITS} digits")
    return int(text)


def _constant(name: str) -> Any:
    raise BodyError(f"the body uses {name}, which is not JSON")


def check_text(value: str, what: str = "the body") -> str:
    """``value`` unless it holds NUL or a lone surrogate (``BodyError``)."""
    if _BAD_CHARS.search(value):
        raise BodyError(f"{what} holds a NUL character or a lone surrogate")
    return value


def _check_strings(data: Any) -> None:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                check_text(key)
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def parse_json(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse bounded JSON; raise ``BodyError`` with what is wrong."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise BodyError("the body is not UTF-8") from None
    if nesting_depth(text) > max_depth:
        raise BodyError(f"the JSON body is nested deeper than {max_depth} levels")
    try:
        data = json.loads(text, parse_int=_int, parse_constant=_constant)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BodyError(f"the body is not valid JSON: {exc}") from None
    except ValueError as exc:  # int conversion limits and our own checks
        if isinstance(exc, BodyError):
            raise
        raise BodyError(f"the body is not valid JSON: {exc}") from None
    _check_strings(data)
    return data


def parse_json_object(text: str | bytes) -> dict[str, Any]:
    data = parse_json(text)
    if not isinstance(data, dict):
        raise BodyError("the JSON body must be an object")
    return data
