"""Sequences: ``content/sequences/<name>.yaml`` parsed and validated.

Pure: ``parse_sequence`` takes the file's text and the known items, returns a ``Sequence``
or raises a ``ContentError`` (``ContentProblems`` when there are several) naming the file and
the line of each offending key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from datetime import time, timedelta
from typing import Any, TypeVar

from newsletter.content.model import KINDS, ContentItem, Rotation, SendWindow, Sequence, Step
from newsletter.content.triggers import parse_triggers
from newsletter.content.yaml_source import YamlDocument, parse_yaml
from newsletter.errors import ContentError, ContentProblems

ENROLL_MODES = ("on_confirm", "manual")
ROTATION_KINDS = tuple(kind for kind in KINDS if kind != "system")
_TOP_KEYS = (
    "name",
    "description",
    "enroll",
    "exit",
    "reenroll",
    "send_window",
    "steps",
    "then",
    "tags",
    "priority",  # newsletter.attention (high, normal, low)
)
_STEP_KEYS = ("send", "after")
_THEN_KEYS = ("every", "from")
_DELAY = re.compile(r"^(?:\d+[dhm])+$")
_DELAY_PART = re.compile(r"(\d+)([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_T = TypeVar("_T")


def parse_delay(value: object) -> timedelta:
    """``"3d"``, ``"12h"``, ``"30m"`` or a combination like ``"1d12h"``; ValueError if not."""
    text = str(value).strip() if isinstance(value, str | int) else ""
    if isinstance(value, bool) or not _DELAY.match(text):
        raise ValueError(
            f"bad delay {value!r}: write a number and a unit, d (days), h (hours) or "
            "m (minutes), e.g. 3d, 12h or 1d12h"
        )
    delay = timedelta()
    for amount, unit in _DELAY_PART.findall(text):
        delay += timedelta(**{_UNITS[unit]: int(amount)})
    return delay


def parse_window(value: object) -> SendWindow:
    """``"08:00-11:00"`` in the subscriber's local time; ValueError if not."""
    match = _WINDOW.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"bad send_window {value!r}: write it as HH:MM-HH:MM, e.g. 08:00-11:00")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    try:
        start, end = time(start_h, start_m), time(end_h, end_m)
    except ValueError:
        raise ValueError(f"bad send_window {value!r}: hours run 00-23 and minutes 00-59") from None
    if end <= start:
        raise ValueError(
            f"bad send_window {value!r}: the window must end after it starts on the same "
            "day, e.g. 08:00-11:00"
        )
    return SendWindow(start, end)


def parse_sequence(
    text: str,
    path: str,
    stem: str,
    items: Mapping[str, ContentItem],
    broken: Collection[str] = (),
) -> Sequence:
    """Validate one sequence file; *items* maps every known item id to its item.

    Every problem of the file is found in one pass: one raises a ``ContentError``, several a
    ``ContentProblems`` listing them in file order. Steps naming a *broken* item (a file that
    exists but has its own error) are not reported again here."""
    doc = parse_yaml(text, path)
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error("a sequence must be a mapping with name, send_window and steps")
    problems: list[ContentError] = []
    _reject_unknown(doc, data, _TOP_KEYS, (), problems)
    name = _attempt(problems, lambda: _name(doc, data, stem), stem)
    triggers = _attempt(problems, lambda: parse_triggers(doc, data), None)
    window = _attempt(problems, lambda: _window(doc, data), None)
    description = _attempt(problems, lambda: _string(doc, data, "description", default=""), "")
    steps = _steps(doc, data, items, broken, problems)
    then = _attempt(problems, lambda: _rotation(doc, data.get("then")), None)
    no_tags: tuple[str, ...] = ()
    tags = _attempt(problems, lambda: _tags(doc, data.get("tags", [])), no_tags)
    priority = _attempt(problems, lambda: _priority(doc, data), 0)
    if problems or triggers is None or window is None:
        problems.sort(key=lambda problem: problem.line or 0)
        raise problems[0] if len(problems) == 1 else ContentProblems(problems)
    return Sequence(
        name=name,
        description=description,
        enroll=triggers.describe(),
        send_window=window,
        steps=steps,
        then=then,
        path=path,
        tags=tags,
        priority=priority,
        triggers=triggers,
    )


def _attempt(problems: list[ContentError], check: Callable[[], _T], default: _T) -> _T:
    """Run one independent check; a problem is kept (all of a ``ContentProblems``)."""
    try:
        return check()
    except ContentError as exc:
        problems.extend(getattr(exc, "problems", [exc]))
        return default


def _name(doc: YamlDocument, data: dict[str, Any], stem: str) -> str:
    name = _string(doc, data, "name", default=stem)
    if name != stem:
        raise doc.error(
            f"name {name!r} does not match the file name {stem + '.yaml'!r}; rename one of them",
            "name",
        )
    if not NAME.match(name):
        raise doc.error(f"bad name {name!r}: use lower-case letters, digits and dashes", "name")
    return name


def _window(doc: YamlDocument, data: dict[str, Any]) -> SendWindow:
    if "send_window" not in data:
        raise doc.error("missing send_window: add e.g. 'send_window: \"08:00-11:00\"'")
    try:
        return parse_window(data["send_window"])
    except ValueError as exc:
        raise doc.error(str(exc), "send_window") from None


def _priority(doc: YamlDocument, data: dict[str, Any]) -> int:
    """``priority: high|normal|low`` (default normal): who wins a slot of the marketing cap."""
    from newsletter.attention.priority import NORMAL, parse_priority

    if "priority" not in data:
        return NORMAL
    try:
        return parse_priority(data["priority"])
    except ValueError as exc:
        raise doc.error(str(exc), "priority") from None


def _steps(
    doc: YamlDocument,
    data: dict[str, Any],
    items: Mapping[str, ContentItem],
    broken: Collection[str],
    problems: list[ContentError],
) -> tuple[Step, ...]:
    """Every valid step; each problem of each step is appended to *problems*."""
    raw = data.get("steps")
    if not isinstance(raw, list) or not raw:
        problems.append(
            doc.error("steps must be a list of '- send: <kind>/<slug>' entries", "steps")
        )
        return ()
    steps = []
    for index, entry in enumerate(raw):
        where = ("steps", index)
        if not isinstance(entry, dict):
            problems.append(
                doc.error("each step needs 'send: <kind>/<slug>' and 'after: <delay>'", *where)
            )
            continue
        _reject_unknown(doc, entry, _STEP_KEYS, where, problems)
        item_id = entry.get("send")
        found = len(problems)
        if not isinstance(item_id, str):
            problems.append(doc.error("step is missing 'send: <kind>/<slug>'", *where))
        elif items.get(item_id) is None and item_id not in broken:
            problems.append(
                doc.error(
                    f"step {index + 1} sends {item_id!r}, which is not in the content library "
                    f"(expected content/{item_id}.md)",
                    *where,
                    "send",
                )
            )
        elif (item := items.get(item_id)) is not None and item.transactional:
            problems.append(
                doc.error(
                    f"step {index + 1} sends {item_id!r}, a transactional email; sequences "
                    "send marketing items only",
                    *where,
                    "send",
                )
            )
        if "after" not in entry:
            problems.append(
                doc.error(f"step {index + 1} is missing 'after:' (e.g. after: 3d)", *where)
            )
            continue
        try:
            after = parse_delay(entry["after"])
        except ValueError as exc:
            problems.append(doc.error(str(exc), *where, "after"))
            continue
        if len(problems) == found and isinstance(item_id, str):
            steps.append(Step(item_id, after))
    return tuple(steps)


def _rotation(doc: YamlDocument, raw: object) -> Rotation | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise doc.error("then must be a mapping: {every: 4d, from: [tips, ...]}", "then")
    _reject_unknown(doc, raw, _THEN_KEYS, ("then",))
    try:
        every = parse_delay(raw.get("every"))
    except ValueError as exc:
        raise doc.error(str(exc), "then", "every") from None
    if every <= timedelta():
        raise doc.error("then.every must be longer than zero", "then", "every")
    kinds = raw.get("from")
    if not isinstance(kinds, list) or not kinds:
        raise doc.error("then.from must list kinds, e.g. [tips, testimonials]", "then", "from")
    for index, kind in enumerate(kinds):
        if kind not in ROTATION_KINDS:
            raise doc.error(
                f"then.from: {kind!r} is not a kind that can rotate; use "
                f"{', '.join(ROTATION_KINDS)}",
                "then",
                "from",
                index,
            )
    return Rotation(every, tuple(kinds))


def _tags(doc: YamlDocument, raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(tag, str) for tag in raw):
        raise doc.error("tags must be a list of words", "tags")
    return tuple(raw)


def _string(doc: YamlDocument, data: dict[str, Any], key: str, *, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise doc.error(f"{key} must be a string, got {value!r}", key)
    return value


def _reject_unknown(
    doc: YamlDocument,
    data: dict[Any, Any],
    allowed: tuple[str, ...],
    where: tuple[str | int, ...],
    problems: list[ContentError] | None = None,
) -> None:
    """Every unknown key is a problem: appended to *problems*, or the first one raised."""
    for key in data:
        if key not in allowed:
            problem = doc.error(
                f"unknown key {key!r}; allowed keys: {', '.join(allowed)}", *where, key
            )
            if problems is None:
                raise problem
            problems.append(problem)
