"""``enroll:``, ``exit:`` and ``reenroll:`` of a sequence file, validated (pure).

Forms::

    enroll: on_confirm            # or: manual
    enroll:                       # any of these
      on_confirm: true
      on_tag: customers           # a tag, or a list of tags
      on_event: purchase          # an event name, or a list
    exit:                         # stop the enrollment when any of these happens
      on_tag: customers
      on_event: purchase
    reenroll: false               # true: enrolling again restarts a finished enrollment
"""

from __future__ import annotations

import re
from typing import Any

from newsletter.content.model import Triggers
from newsletter.content.yaml_source import YamlDocument
from newsletter.errors import ContentError, ContentProblems

EVENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
TAG_NAME = re.compile(r"^[^\s,;][^,;]{0,63}$")
ENROLL_WORDS = ("on_confirm", "manual")
ENROLL_KEYS = ("on_confirm", "on_tag", "on_event")
EXIT_KEYS = ("on_tag", "on_event")


def parse_triggers(doc: YamlDocument, data: dict[str, Any]) -> Triggers:
    """The triggers of a sequence mapping; ``ContentError`` naming the line if invalid
    (``ContentProblems`` when enroll, exit and reenroll each have one)."""
    problems: list[ContentError] = []
    on_confirm = False
    on_tags: tuple[str, ...] = ()
    on_events: tuple[str, ...] = ()
    try:
        on_confirm, on_tags, on_events = _enroll(doc, data.get("enroll", "manual"))
    except ContentError as exc:
        problems.append(exc)
    exit_tags: tuple[str, ...] = ()
    exit_events: tuple[str, ...] = ()
    try:
        exit_tags, exit_events = _exit(doc, data.get("exit"))
    except ContentError as exc:
        problems.append(exc)
    reenroll = data.get("reenroll", False)
    if not isinstance(reenroll, bool):
        problems.append(doc.error(f"reenroll must be true or false, got {reenroll!r}", "reenroll"))
    for tag in on_tags:
        if tag in exit_tags:
            problems.append(
                doc.error(
                    f"the sequence enrolls and exits on the tag {tag!r}: everyone who joins "
                    "would leave at once; drop one of enroll.on_tag / exit.on_tag",
                    "exit",
                    "on_tag",
                )
            )
    for event in on_events:
        if event in exit_events:
            problems.append(
                doc.error(
                    f"the sequence enrolls and exits on the event {event!r}: everyone who "
                    "joins would leave at once; drop one of enroll.on_event / exit.on_event",
                    "exit",
                    "on_event",
                )
            )
    if problems:
        raise problems[0] if len(problems) == 1 else ContentProblems(problems)
    return Triggers(on_confirm, on_tags, on_events, exit_tags, exit_events, bool(reenroll))


def _exit(doc: YamlDocument, raw_exit: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if raw_exit is None:
        return (), ()
    if not isinstance(raw_exit, dict) or not raw_exit:
        raise doc.error("exit must be a mapping: {on_tag: <tag>} and/or {on_event: <name>}", "exit")
    _reject_unknown(doc, raw_exit, EXIT_KEYS, "exit")
    exit_tags = _names(doc, raw_exit.get("on_tag"), "exit", "on_tag", tag=True)
    exit_events = _names(doc, raw_exit.get("on_event"), "exit", "on_event", tag=False)
    return exit_tags, exit_events


def _enroll(doc: YamlDocument, raw: object) -> tuple[bool, tuple[str, ...], tuple[str, ...]]:
    if isinstance(raw, str):
        if raw not in ENROLL_WORDS:
            raise doc.error(
                f"enroll must be on_confirm, manual or a mapping of on_confirm / on_tag / "
                f"on_event, got {raw!r}",
                "enroll",
            )
        return raw == "on_confirm", (), ()
    if not isinstance(raw, dict) or not raw:
        raise doc.error(
            "enroll must be on_confirm, manual or a mapping such as {on_event: purchase}",
            "enroll",
        )
    _reject_unknown(doc, raw, ENROLL_KEYS, "enroll")
    on_confirm = raw.get("on_confirm", False)
    if not isinstance(on_confirm, bool):
        raise doc.error(
            f"enroll.on_confirm must be true or false, got {on_confirm!r}", "enroll", "on_confirm"
        )
    tags = _names(doc, raw.get("on_tag"), "enroll", "on_tag", tag=True)
    events = _names(doc, raw.get("on_event"), "enroll", "on_event", tag=False)
    if not (on_confirm or tags or events):
        raise doc.error(
            "enroll names no trigger: set on_confirm: true, on_tag or on_event, or write "
            "enroll: manual",
            "enroll",
        )
    return on_confirm, tags, events


def _names(doc: YamlDocument, raw: object, section: str, key: str, *, tag: bool) -> tuple[str, ...]:
    if raw is None:
        return ()
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise doc.error(f"{section}.{key} is an empty list", section, key)
    found: list[str] = []
    for value in values:
        pattern = TAG_NAME if tag else EVENT_NAME
        text = value.strip().lower() if tag and isinstance(value, str) else value
        if not isinstance(text, str) or not pattern.match(text):
            what = (
                "a tag (a word without commas, at most 64 characters)"
                if tag
                else "an event name (lower-case letters, digits, '_', '.', '-', e.g. purchase)"
            )
            raise doc.error(f"{section}.{key}: {value!r} is not {what}", section, key)
        if text not in found:
            found.append(text)
    return tuple(found)


def _reject_unknown(
    doc: YamlDocument, data: dict[Any, Any], allowed: tuple[str, ...], section: str
) -> None:
    for key in data:
        if key not in allowed:
            raise doc.error(
                f"unknown key {key!r} in {section}; allowed keys: {', '.join(allowed)}",
                section,
                key,
            )
