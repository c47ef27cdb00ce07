"""Read JSON a stranger sent without letting its shape crash the service (pure).

``json.loads`` itself raises ``RecursionError`` on arrays nested about 1,000 deep and
``ValueError`` on an integer of more than 4,300 digits (Python's int conversion limit);
a document just under the recursion limit would still crash whatever walks it next
(escaping, storing as JSON). ``load_json`` turns all of these into ``JsonInputError``
with a message for the caller: integers are capped at ``MAX_INTEGER_DIGITS`` digits and
nesting at ``MAX_DEPTH`` levels, far beyond any form or SendGrid event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from newsletter.errors import NewsletterError

MAX_DEPTH = 32
MAX_INTEGER_DIGITS = 64
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * (MAX_INTEGER_DIGITS + 1)
_CONTAINERS = (dict, list)


class JsonInputError(NewsletterError, ValueError):
    """The body is not JSON we accept; the message says why (HTTP 400)."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise JsonInputError(
            f"the JSON body has an integer of {len(text.lstrip('-'))} digits; "
            f"at most {MAX_INTEGER_DIGITS} are accepted"
        )
    return int(text)


def load_json(
    body: bytes,
    *,
    max_depth: int = MAX_DEPTH,
    parse_float: Callable[[str], Any] | None = None,
    parse_constant: Callable[[str], Any] | None = None,
) -> Any:
    """The decoded document, or ``JsonInputError`` for bad UTF-8, bad JSON, an integer
    that is too long or nesting deeper than ``max_depth``."""
    # Without a run of more than MAX_INTEGER_DIGITS digits no integer can be too long:
    # the C parser's own ``int`` then gives the same values, without a call per number.
    long_run = _LONG_RUN in body.translate(_DIGITS_AS_ZERO)
    try:
        data = json.loads(
            body.decode("utf-8"),
            parse_int=_bounded_int if long_run else None,
            parse_float=parse_float,
            parse_constant=parse_constant,
        )
    except RecursionError:
        raise JsonInputError(
            f"the JSON body is nested too deeply; at most {max_depth} levels are accepted"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JsonInputError(f"the body is not valid JSON: {exc}") from None
    if nesting_exceeds(data, max_depth):
        raise JsonInputError(
            f"the JSON body is nested too deeply; at most {max_depth} levels are accepted"
        )
    return data


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays/objects in ``value`` nest more than ``limit`` levels (no recursion).

    Level by level: each level is the containers inside the previous one."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 1
    while level:
        if depth > limit:
            return True
        inner: list[Any] = []
        for container in level:
            children = container.values() if isinstance(container, dict) else container
            inner += [child for child in children if isinstance(child, _CONTAINERS)]
        level = inner
        depth += 1
    return False
