"""Priorities of marketing email: ``high``, ``normal``, ``low`` (pure)."""

from __future__ import annotations

PRIORITIES: dict[str, int] = {"low": 1, "normal": 2, "high": 3}
NAMES: dict[int, str] = {value: name for name, value in PRIORITIES.items()}
NORMAL = PRIORITIES["normal"]


def parse_priority(text: object) -> int:
    """``"high"`` -> 3; ValueError naming the choices."""
    if isinstance(text, str) and text.strip().lower() in PRIORITIES:
        return PRIORITIES[text.strip().lower()]
    raise ValueError(f"bad priority {text!r}: use high, normal or low")


def priority_name(value: int) -> str:
    return NAMES.get(value, str(value))
