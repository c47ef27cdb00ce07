"""What the attention rules need from the app, built once per process (settings, library).

``NEWSLETTER_MARKETING_CAP`` is every subscriber's cap; a subscriber who chose "at most one
a week" in the preference centre has that cap too (the stricter one wins at each moment).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from newsletter.attention.cap import Cap, parse_cap
from newsletter.attention.priority import NORMAL
from newsletter.attention.topics import Topics, parse_topics
from newsletter.content.model import SendWindow
from newsletter.zones import find_zone

if TYPE_CHECKING:
    from newsletter.content.library import ContentLibrary
    from newsletter.settings import Settings

TOPICS_FILE = "topics.yaml"

# The preference centre's frequency choices: value -> (label, the subscriber's own cap).
FREQUENCIES: dict[str, tuple[str, Cap | None]] = {
    "as_they_come": ("As they come", None),
    "weekly": ("At most one a week", Cap(1, timedelta(days=7))),
}
DEFAULT_FREQUENCY = "as_they_come"


@dataclass(frozen=True)
class SequenceRule:
    priority: int
    window: SendWindow
    first_exempt: bool  # the first step goes at once (after: 0d): it answers the signup


@dataclass(frozen=True)
class ItemFacts:
    topic: str | None
    tags: tuple[str, ...]


@dataclass
class AttentionPolicy:
    caps: tuple[Cap, ...]
    stale_hours: float
    default_zone: str
    sequences: Mapping[str, SequenceRule] = field(default_factory=dict)
    items: Mapping[str, ItemFacts] = field(default_factory=dict)
    topics: Topics = field(default_factory=Topics)
    _zones: dict[str, tzinfo] = field(default_factory=dict)
    # topic_of's answers: the claim asks the same few questions for every row of a batch.
    _topics: dict[tuple[str, str | None, str | None], str | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    def zone(self, name: str | None) -> tzinfo:
        key = name or ""
        found = self._zones.get(key)
        if found is None:
            found = (find_zone(key) if key else None) or ZoneInfo(self.default_zone)
            self._zones[key] = found
        return found

    def caps_for(self, frequency: str | None) -> tuple[Cap, ...]:
        own = FREQUENCIES.get(frequency or DEFAULT_FREQUENCY, ("", None))[1]
        return self.caps if own is None else (*self.caps, own)

    def sequence_priority(self, name: str | None) -> int:
        rule = self.sequences.get(name or "")
        return rule.priority if rule else NORMAL

    def topic_of(
        self, item_id: str, *, sequence: str | None = None, campaign_topic: str | None = None
    ) -> str | None:
        key = (item_id, sequence, campaign_topic)
        if key in self._topics:
            return self._topics[key]
        facts = self.items.get(item_id, ItemFacts(None, ()))
        topic = self.topics.topic_for(
            campaign_topic=campaign_topic,
            item_topic=facts.topic,
            sequence=sequence,
            tags=facts.tags,
        )
        self._topics[key] = topic
        return topic


def load_topics(
    content_dir: Path, *, sequences: list[str], item_topics: list[tuple[str, str]]
) -> Topics:
    """``content/topics.yaml``, or no topics when the file does not exist."""
    path = content_dir / TOPICS_FILE
    if not path.exists():
        return Topics()
    return parse_topics(
        path.read_text(encoding="utf-8"), str(path), sequences=sequences, item_topics=item_topics
    )


def build_policy(settings: Settings, library: ContentLibrary) -> AttentionPolicy:
    """The policy for one process: the cap, sequence rules, item topics, topics.yaml."""
    cap = parse_cap(settings.marketing_cap)
    items = {i.id: ItemFacts(i.topic, i.tags) for i in library.items()}
    sequences = {
        s.name: SequenceRule(s.priority, s.send_window, s.steps[0].after == timedelta())
        for s in library.sequences()
    }
    topics = load_topics(
        settings.content_dir,
        sequences=list(sequences),
        item_topics=[(i.id, i.topic) for i in library.items() if i.topic],
    )
    return AttentionPolicy(
        caps=() if cap is None else (cap,),
        stale_hours=settings.campaign_stale_hours,
        default_zone=settings.default_timezone,
        sequences=sequences,
        items=items,
        topics=topics,
    )
