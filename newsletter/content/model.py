"""Values of the content library, shared by loading, rendering, drip planning and delivery.

Pure data: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, timedelta

KINDS: tuple[str, ...] = ("tips", "testimonials", "tutorials", "campaigns", "system")


@dataclass(frozen=True)
class SubscriberContext:
    """What templates may read as ``subscriber``."""

    email: str
    first_name: str | None = None
    timezone: str = "UTC"
    tags: tuple[str, ...] = ()


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
class Sequence:
    name: str
    description: str
    enroll: str  # "on_confirm" or "manual"
    send_window: SendWindow
    steps: tuple[Step, ...]
    then: Rotation | None = None
    path: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    priority: int = 2  # ``priority:`` high 3, normal 2, low 1 (newsletter.attention)
