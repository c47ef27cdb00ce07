"""Values of the content library, shared by loading, rendering, drip planning and delivery.

Pure data: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any

KINDS: tuple[str, ...] = ("tips", "testimonials", "tutorials", "campaigns", "system")


@dataclass(frozen=True)
class SubscriberContext:
    """What templates may read as ``subscriber``."""

    email: str
    first_name: str | None = None
    timezone: str = "UTC"
    tags: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)  # custom fields


@dataclass(frozen=True)
class EventContext:
    """What templates may read as ``event``: the event that started the enrollment.

    Empty (no name, no properties) for email not started by an event, so
    ``event.properties.product | default("your tool")`` works everywhere.
    """

    name: str = ""
    id: str = ""
    properties: Mapping[str, Any] = field(default_factory=dict)


NO_EVENT = EventContext()


@dataclass(frozen=True)
class Links:
    """What templates may read as ``links``.

    ``unsubscribe`` is empty only for transactional email (the confirmation);
    ``confirm`` is set only for the confirmation email.
    """

    unsubscribe: str = ""
    web_version: str | None = None
    confirm: str | None = None
    keep: str | None = None  # the sunset email's one-click "keep me subscribed" link
    preferences: str | None = None  # the preference centre (marketing email only)


@dataclass(frozen=True)
class ContentItem:
    """One Markdown file with front matter: ``content/<kind>/<slug>.md``."""

    id: str  # "<kind>/<slug>"
    kind: str
    slug: str
    subject: str  # a Jinja expression source, rendered per subscriber
    preheader: str
    template: str  # template name in templates/emails/ (without extension)
    body: str  # Markdown source (may hold Jinja expressions)
    path: str
    tags: tuple[str, ...] = ()
    medical: bool = True  # adds the "not medical advice" line
    transactional: bool = False  # e.g. system/confirmation: no unsubscribe footer required
    example: bool = False  # a shipped example testimonial, shown with an 'example' banner
    topic: str | None = None  # ``topic:`` of the preference centre (content/topics.yaml)
    attributes: tuple[str, ...] = ()  # custom fields it reads: `content check` fills them in
    event_properties: tuple[str, ...] = ()  # event properties it reads, likewise


@dataclass(frozen=True)
class RenderedEmail:
    item_id: str
    subject: str
    preheader: str
    html: str
    text: str
    transactional: bool = False


@dataclass(frozen=True)
class Step:
    item_id: str
    after: timedelta


@dataclass(frozen=True)
class Rotation:
    """``then:`` of a sequence: every ``every``, the next unseen item of ``kinds``."""

    every: timedelta
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class SendWindow:
    start: time
    end: time


@dataclass(frozen=True)
class Triggers:
    """``enroll:``, ``exit:`` and ``reenroll:`` of a sequence file."""

    on_confirm: bool = False
    on_tags: tuple[str, ...] = ()
    on_events: tuple[str, ...] = ()
    exit_tags: tuple[str, ...] = ()
    exit_events: tuple[str, ...] = ()
    reenroll: bool = False

    def describe(self) -> str:
        """``on_confirm``, ``on_event: purchase``, ``manual``: how people join."""
        parts = ["on_confirm"] if self.on_confirm else []
        parts += [f"on_tag: {t}" for t in self.on_tags]
        parts += [f"on_event: {e}" for e in self.on_events]
        return ", ".join(parts) or "manual"

    def describe_exit(self) -> str:
        parts = [f"on_tag: {t}" for t in self.exit_tags]
        parts += [f"on_event: {e}" for e in self.exit_events]
        return ", ".join(parts)


@dataclass(frozen=True)
class Sequence:
    name: str
    description: str
    enroll: str  # how people join, as ``Triggers.describe`` writes it
    send_window: SendWindow
    steps: tuple[Step, ...]
    then: Rotation | None = None
    path: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    priority: int = 2  # ``priority:`` high 3, normal 2, low 1 (newsletter.attention)
    triggers: Triggers = field(default_factory=Triggers)
