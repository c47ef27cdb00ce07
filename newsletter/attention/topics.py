"""Topics of the preference centre: ``content/topics.yaml`` parsed and validated (pure).

```yaml
topics:
  - name: tips
    description: Tips, stories and tutorials of our drip.
    sequences: [back-pain-basics]     # every email of these sequences
    tags: [low-back]                  # items with any of these tags
  - name: offers
    description: Offers and news from the shop.
```

An email's topic: the ``topic:`` of its campaign, else the ``topic:`` in the item's front
matter, else the first topic covering its sequence, else the first covering one of the item's
tags; else it has none (and no opt-out can stop it, only an unsubscribe).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from newsletter.content.sequences import NAME
from newsletter.content.yaml_source import YamlDocument, parse_yaml

_KEYS = ("name", "description", "sequences", "tags")


@dataclass(frozen=True)
class Topic:
    name: str
    description: str
    sequences: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Topics:
    topics: tuple[Topic, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.topics)

    def topic_for(
        self,
        *,
        campaign_topic: str | None = None,
        item_topic: str | None = None,
        sequence: str | None = None,
        tags: Iterable[str] = (),
    ) -> str | None:
        """The topic of one email (see the module doc for the order)."""
        if campaign_topic:
            return campaign_topic
        if item_topic:
            return item_topic
        if sequence is not None:
            for topic in self.topics:
                if sequence in topic.sequences:
                    return topic.name
        have = {t.lower() for t in tags}
        for topic in self.topics:
            if have & set(topic.tags):
                return topic.name
        return None


def parse_topics(
    text: str,
    path: str,
    *,
    sequences: Collection[str],
    item_topics: Iterable[tuple[str, str]] = (),
) -> Topics:
    """Validate ``topics.yaml``; ``item_topics`` are (item id, topic) pairs to check.

    Raises ``ContentError`` naming the file and the line.
    """
    doc = parse_yaml(text, path)
    data = doc.data
    if data is None:
        return Topics()
    if not isinstance(data, dict) or set(data) - {"topics"}:
        raise doc.error("topics.yaml must be a mapping with one key, topics: a list of topics")
    raw = data.get("topics")
    raw = [] if raw is None else raw
    if not isinstance(raw, list):
        raise doc.error("topics must be a list of {name, description, sequences, tags}", "topics")
    found: list[Topic] = []
    for index, entry in enumerate(raw):
        where: tuple[str | int, ...] = ("topics", index)
        if not isinstance(entry, dict):
            raise doc.error("each topic needs name and description", *where)
        for key in entry:
            if key not in _KEYS:
                raise doc.error(
                    f"unknown key {key!r}; allowed keys: {', '.join(_KEYS)}", *where, key
                )
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise doc.error(
                f"bad topic name {name!r}: use lower-case letters, digits and dashes", *where
            )
        if name in (t.name for t in found):
            raise doc.error(f"topic {name!r} is listed twice", *where, "name")
        description = entry.get("description")
        if not isinstance(description, str) or not description.strip():
            raise doc.error(f"topic {name!r} needs a description (shown to subscribers)", *where)
        covered = _words(doc, entry, "sequences", where)
        for sequence in covered:
            if sequence not in sequences:
                raise doc.error(
                    f"topic {name!r} covers sequence {sequence!r}, which does not exist "
                    f"(known: {', '.join(sorted(sequences)) or 'none'})",
                    *where,
                    "sequences",
                )
        tags = tuple(t.lower() for t in _words(doc, entry, "tags", where))
        found.append(Topic(name, description.strip(), covered, tags))
    topics = Topics(tuple(found))
    for item_id, topic in item_topics:
        if topic not in topics.names:
            raise doc.error(
                f"{item_id} names topic {topic!r}, which topics.yaml does not list "
                f"(known: {', '.join(topics.names) or 'none'})"
            )
    return topics


def _words(
    doc: YamlDocument, entry: dict[str, object], key: str, where: tuple[str | int, ...]
) -> tuple[str, ...]:
    raw = entry.get(key, [])
    if not isinstance(raw, list) or not all(isinstance(w, str) and w.strip() for w in raw):
        raise doc.error(f"{key} must be a list of words", *where, key)
    return tuple(w.strip() for w in raw)
