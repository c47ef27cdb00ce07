"""The mail port: what every delivery backend takes and gives back.

Backends translate their SDK's errors here; nothing outside ``newsletter/delivery``
imports an SDK.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from newsletter.errors import ProviderAuthError


@dataclass(frozen=True)
class Skeleton:
    """Content shared by emails that differ only in per-recipient values.

    ``substitutions`` maps each tag (``%%nl:first_name%%``) to one email's own text;
    applied to ``subject``/``html``/``text`` (``personalization.apply_substitutions``)
    they give exactly that email's subject, html and text.
    """

    subject: str
    html: str
    text: str
    substitutions: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class OutgoingEmail:
    """One fully rendered email to one recipient.

    ``delivery_id`` is the ledger row id; it travels as the ``X-Newsletter-Delivery``
    header and in SendGrid ``custom_args``. ``personal`` maps a name (``first_name``,
    ``email``, ``unsubscribe_url`` ...) to the per-recipient value that was rendered into
    subject/html/text; backends that batch (SendGrid personalizations) use it to find the
    shared skeleton of several emails.
    """

    delivery_id: int
    to_email: str
    subject: str
    html: str
    text: str
    from_email: str
    from_name: str | None = None
    to_name: str | None = None
    reply_to: str | None = None
    message_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    personal: Mapping[str, str] = field(default_factory=dict)
    # When the email was composed: its ``Date`` header (RFC 5322 requires one).
    date: datetime | None = None
    # The envelope sender (SMTP ``MAIL FROM``): a VERP address ``bounces+<id>@...`` when
    # ``NEWSLETTER_BOUNCE_ADDRESS`` is set; None means ``from_email``.
    return_path: str | None = None
    # Set by a producer that built subject/html/text from a shared skeleton (a batch
    # render plan): the same guarantee ``make_skeleton`` proves, without the search.
    skeleton: Skeleton | None = field(default=None, compare=False, repr=False)


class SendStatus(enum.StrEnum):
    SENT = "sent"  # accepted by the provider
    FAILED = "failed"  # permanent for this recipient
    RETRY = "retry"  # transient; try again after ``retry_after`` seconds (or backoff)
    UNKNOWN = "unknown"  # the request may or may not have been acted on
    # Never shown to the provider (the batch stopped before it): requeued after
    # ``retry_after`` (or a short pause) without counting the attempt.
    NOT_ATTEMPTED = "not_attempted"


@dataclass(frozen=True)
class SendResult:
    delivery_id: int
    status: SendStatus
    provider_message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    # A permanent refusal of the *address* (SMTP 550 5.1.1 and friends): the subscriber
    # is suppressed as bounced at once.
    address_refused: bool = False


class BatchAuthError(ProviderAuthError):
    """The provider refused our credentials part-way through a batch.

    ``results`` holds the outcomes already known (emails sent, failed or possibly
    accepted before the refusal), in input order, ``None`` for emails never handed over.
    """

    def __init__(self, message: str, results: Sequence[SendResult | None] = ()) -> None:
        self.results = tuple(results)
        super().__init__(message)


class Mailer(Protocol):
    """A delivery backend. ``send_batch`` returns one result per message, same order.

    It raises ``ProviderAuthError`` when the provider refuses our credentials (a
    ``BatchAuthError`` carries what was already sent); every other failure is reported
    per message as a ``SendResult``.
    """

    name: str

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]: ...

    def close(self) -> None: ...
