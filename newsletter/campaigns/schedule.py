"""Campaign timing and segment rules: pure functions, no I/O, no clock.

Decisions (copied into the README by the lead):

- ``--at`` takes ISO-8601 (``2026-12-01T09:00``, ``2026-12-01T09:00+01:00``, ``...Z``) or
  ``2026-12-01 09:00``. A time without an offset is a wall-clock time in ``--timezone``
  (default ``NEWSLETTER_DEFAULT_TIMEZONE``); a time with an offset is an exact instant and
  the zone is only used to display it. ``--local-time`` needs a time without an offset.
- Wall times that do not exist in a zone (the hour skipped when clocks go forward) resolve
  like Python's ``zoneinfo`` with ``fold=0``: 02:30 on a spring-forward night becomes 03:30
  local time. Ambiguous times (clocks go back) take the first occurrence.
- With ``--local-time`` every subscriber's email is due at that wall time in their own zone;
  the campaign starts at the earliest of those instants. Scheduling is refused when that
  earliest instant has already passed (someone would get it late) or when the latest is
  further away than ``NEWSLETTER_CAMPAIGN_MAX_SCHEDULE_DAYS``.
- Segment: a subscriber matches when they have ANY of the include tags (or no include tags
  were given) and NONE of the exclude tags. Tags compare lower-cased, like subscriber tags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from newsletter.attributes import text_of
from newsletter.errors import CampaignError, UnknownTimeZoneError
from newsletter.zones import find_zone

WHERE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


@dataclass(frozen=True)
class RequestedTime:
    """What ``--at`` said: a wall-clock time, or an exact instant when it had an offset."""

    wall: datetime  # naive
    instant: datetime | None  # aware UTC when the text carried an offset


@dataclass(frozen=True)
class Segment:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    # ``--where NAME=VALUE``: custom fields that must read VALUE (all of them)
    where: tuple[tuple[str, str], ...] = ()

    def matches(self, tags: Iterable[str], attributes: Mapping[str, object] | None = None) -> bool:
        """The rule the SQL in ``campaign_audience`` implements (kept here for tests).

        Without ``attributes`` the ``where`` conditions are not tested (tags only)."""
        have = {t.lower() for t in tags}
        if self.include and not have & set(self.include):
            return False
        if have & set(self.exclude):
            return False
        if attributes is None:
            return True
        return all(
            name in attributes and text_of(attributes[name]) == value for name, value in self.where
        )

    def describe(self) -> str:
        parts = []
        if self.include:
            parts.append(f"any of {', '.join(self.include)}")
        if self.exclude:
            parts.append(f"none of {', '.join(self.exclude)}")
        text = "tags: " + "; ".join(parts) if parts else ""
        if self.where:
            fields = " and ".join(f"{name}={value}" for name, value in self.where)
            text = f"{text}; where {fields}" if text else f"where {fields}"
        return text or "all active subscribers"


def make_segment(
    include: Iterable[str], exclude: Iterable[str], where: Iterable[str] = ()
) -> Segment:
    """Normalise tags (strip, lower case, no duplicates); refuse a tag in both lists.

    ``where`` holds ``NAME=VALUE`` texts (``--where``); a name may appear once."""
    inc = _clean(include)
    exc = _clean(exclude)
    both = [t for t in inc if t in exc]
    if both:
        raise CampaignError(
            f"tag {both[0]!r} is both included and excluded; drop one of --tag / --exclude-tag"
        )
    return Segment(inc, exc, parse_where(where))


def parse_where(texts: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``["plan=pro", "country=DE"]`` -> ``(("plan", "pro"), ("country", "DE"))``."""
    found: dict[str, str] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not WHERE_NAME.match(name):
            raise CampaignError(
                f"bad --where {text[:80]!r}: write NAME=VALUE with a custom field name, "
                "e.g. --where plan=pro"
            )
        if name in found:
            raise CampaignError(f"--where names {name!r} twice; give each field once")
        found[name] = value
    return tuple(found.items())


def segment_from(
    include: Iterable[str], exclude: Iterable[str], where: Mapping[str, str] | None
) -> Segment:
    """The segment a stored campaign row describes."""
    return Segment(tuple(include), tuple(exclude), tuple((where or {}).items()))


def _clean(tags: Iterable[str]) -> tuple[str, ...]:
    seen: list[str] = []
    for tag in tags:
        for part in tag.split(","):
            part = part.strip().lower()
            if part and part not in seen:
                seen.append(part)
    return tuple(seen)


def zone(name: str) -> ZoneInfo:
    found = find_zone(name)
    if found is None:
        raise UnknownTimeZoneError(name)
    return found


def parse_at(text: str) -> RequestedTime:
    """Parse ``--at``; raise ``CampaignError`` naming the accepted forms."""
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(cleaned)
    except ValueError:
        raise CampaignError(
            f"cannot read the time {text!r}; use e.g. '2026-12-01 09:00' or "
            "2026-12-01T09:00:00+01:00"
        ) from None
    if parsed.tzinfo is None:
        return RequestedTime(wall=parsed.replace(microsecond=0), instant=None)
    instant = parsed.astimezone(UTC).replace(microsecond=0)
    return RequestedTime(wall=parsed.replace(tzinfo=None, microsecond=0), instant=instant)


def wall_to_utc(wall: datetime, zone_name: str) -> datetime:
    """The UTC instant of a naive wall-clock time in ``zone_name``."""
    return wall.replace(tzinfo=zone(zone_name)).astimezone(UTC)


def format_wall(wall: datetime) -> str:
    """``YYYY-MM-DD HH:MM`` (seconds only when set): how local times are stored and shown."""
    return wall.isoformat(sep=" ", timespec="seconds" if wall.second else "minutes")


def local_instants(wall: datetime, zones: Iterable[str]) -> dict[str, datetime]:
    """For ``--local-time``: the UTC instant of ``wall`` in each zone."""
    return {name: wall_to_utc(wall, name) for name in zones}


def check_window(
    first: datetime, last: datetime, *, now: datetime, max_days: int, zone_name: str = "UTC"
) -> None:
    """Refuse a start in the past or further than ``max_days`` ahead.

    Times are shown once, as wall times in ``zone_name`` (the zone ``--at`` was read in).
    """
    if first < now:
        raise CampaignError(
            f"{shown_in(first, zone_name)} is in the past (now {shown_in(now, zone_name)}); "
            "pick a later --at, or use `newsletter campaign send NAME` to send now"
        )
    if last > now + timedelta(days=max_days):
        raise CampaignError(
            f"{shown_in(last, zone_name)} is more than {max_days} days ahead; "
            "pick an earlier --at (limit: NEWSLETTER_CAMPAIGN_MAX_SCHEDULE_DAYS)"
        )


def shown_in(at: datetime, zone_name: str) -> str:
    """``2026-12-01 09:00 Europe/Berlin``: an instant as a wall time in a named zone."""
    return f"{at.astimezone(zone(zone_name)):%Y-%m-%d %H:%M} {zone_name}"


def is_stale(start: datetime, *, now: datetime, stale_hours: float) -> bool:
    """A start older than the staleness limit waits for ``resume`` instead of going out."""
    return now - start > timedelta(hours=stale_hours)


def progress_bar(done: int, total: int, *, width: int = 30) -> str:
    """``[#########---------------------]  30%  3,000/10,000``."""
    fraction = 0.0 if total <= 0 else min(1.0, done / total)
    filled = round(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {fraction:4.0%}  {done:,}/{total:,}"
