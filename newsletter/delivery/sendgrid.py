"""The SendGrid adapter: the only module that imports ``sendgrid``.

Payloads are built with the official helpers (``sendgrid.helpers.mail``) and posted to
``{api_url}/v3/mail/send`` with one keep-alive ``httpx.Client`` (a few requests in flight
from a small thread pool). Outcomes follow PRODUCT.md section 7:

====================================  =====================================================
202 (any 2xx)                          SENT, ``X-Message-Id`` kept
400, 413                               FAILED with SendGrid's ``errors[].message``
401, 403                               raise ``SendGridAuthError`` (a ``ProviderAuthError``)
429                                    RETRY after ``Retry-After`` / ``X-RateLimit-Reset``
                                       (60 s when SendGrid sends neither)
5xx, other status, connect/write error RETRY (backoff is the caller's)
read error / time-out after sending    UNKNOWN: SendGrid may have accepted it; never resent
====================================  =====================================================

After any outcome other than SENT/FAILED the rest of the batch is not sent
(NOT_ATTEMPTED: requeued without counting an attempt), so a rate limit or an outage never
turns into a request storm within a batch; across batches the dispatcher honours a
``Retry-After`` for every worker (``newsletter.send_backoff``).
A batched request (personalizations) gives its outcome to every email in it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from sendgrid.helpers.mail import (
    Category,
    Content,
    CustomArg,
    From,
    Header,
    Mail,
    MimeType,
    Personalization,
    ReplyTo,
    Substitution,
    To,
)
from sendgrid.helpers.mail.exceptions import SendGridException

from newsletter.delivery.base import BatchAuthError, OutgoingEmail, SendResult, SendStatus
from newsletter.delivery.personalization import MailGroup, group_messages, singles

DEFAULT_RATE_LIMIT_WAIT = 60.0  # seconds, for a 429 without reset headers

SEND_PATH = "/v3/mail/send"
DELIVERY_HEADER = "X-Newsletter-Delivery"
MAX_ERROR_CHARS = 1000


class SendGridAuthError(BatchAuthError):
    """SendGrid refused the API key. ``results`` holds the outcomes already known
    for the batch (emails sent before the refusal), in input order, ``None`` elsewhere."""


@dataclass(frozen=True)
class _Outcome:
    status: SendStatus
    provider_message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    auth_error: str | None = None  # set on 401/403: stop everything


class _Halt:
    """Shared by the requests of one ``send_batch``: set once sending must stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason: _Outcome | None = None

    def set(self, outcome: _Outcome) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = outcome


def build_mail(group: MailGroup) -> dict[str, Any]:
    """The JSON body of one ``/v3/mail/send`` request for ``group``.

    Raises ``SendGridException`` when the helpers refuse the content (e.g. it contains
    something that looks like a SendGrid API key).
    """
    first = group.first
    mail = Mail()
    mail.from_email = From(first.from_email, first.from_name)
    mail.subject = group.subject
    if first.reply_to:
        mail.reply_to = ReplyTo(first.reply_to)
    # text/plain must come before text/html; the helper keeps that order.
    if group.text:
        mail.add_content(Content(MimeType.text, group.text))
    if group.html:
        mail.add_content(Content(MimeType.html, group.html))
    # ``add_category`` prepends: add in reverse to keep our order.
    for name in reversed(list(dict.fromkeys(first.categories))):
        mail.add_category(Category(name))
    for position, recipient in enumerate(group.recipients):
        mail.add_personalization(
            _personalization(recipient.message, recipient.substitutions), index=position
        )
    body: dict[str, Any] = mail.get()
    return body


def _personalization(
    message: OutgoingEmail, substitutions: Sequence[tuple[str, str]]
) -> Personalization:
    personalization = Personalization()
    personalization.add_to(To(message.to_email, message.to_name))
    for key, value in message.headers.items():
        personalization.add_header(Header(key, value))
    personalization.add_header(Header(DELIVERY_HEADER, str(message.delivery_id)))
    if message.message_id:
        personalization.add_header(Header("Message-ID", message.message_id))
    for tag, value in substitutions:
        personalization.add_substitution(Substitution(tag, value))
    personalization.add_custom_arg(CustomArg("delivery_id", str(message.delivery_id)))
    return personalization


class SendGridMailer:
    """Sends ``OutgoingEmail`` batches through SendGrid's v3 Mail Send API."""

    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        api_url: str = "https://api.sendgrid.com",
        *,
        timeout: float = 10.0,
        concurrency: int = 4,
        batch_personalizations: bool = True,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._api_key = api_key
        self._url = api_url.rstrip("/") + SEND_PATH
        self._batch = batch_personalizations
        self._clock = clock
        self._concurrency = concurrency
        limits = httpx.Limits(
            max_connections=concurrency,
            max_keepalive_connections=concurrency,
            keepalive_expiry=30.0,
        )
        self._client = httpx.Client(
            headers={
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
                "User-Agent": "newsletter-sendgrid/0.1",
            },
            timeout=httpx.Timeout(timeout),
            limits=limits,
            transport=transport or httpx.HTTPTransport(limits=limits, retries=0),
        )
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="sendgrid")

    # ---- the Mailer port -------------------------------------------------------------

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        """Send ``messages``; one result per message, same order.

        Raises ``SendGridAuthError`` (a ``ProviderAuthError``) on HTTP 401/403.
        """
        groups = group_messages(messages) if self._batch else singles(messages)
        halt = _Halt()
        if len(groups) == 1 or self._concurrency == 1:
            outcomes = [self._send_group(g, halt) for g in groups]
        else:
            outcomes = list(self._pool.map(lambda g: self._send_group(g, halt), groups))
        results: list[SendResult | None] = [None] * len(messages)
        for group, outcome in zip(groups, outcomes, strict=True):
            if outcome.auth_error is not None:
                continue
            for recipient in group.recipients:
                results[recipient.index] = SendResult(
                    delivery_id=recipient.message.delivery_id,
                    status=outcome.status,
                    provider_message_id=outcome.provider_message_id,
                    error=outcome.error,
                    retry_after=outcome.retry_after,
                )
        auth = next((o.auth_error for o in outcomes if o.auth_error is not None), None)
        if auth is not None:
            unsent = (SendStatus.RETRY, SendStatus.NOT_ATTEMPTED)
            raise SendGridAuthError(
                auth, [r if r and r.status not in unsent else None for r in results]
            )
        return [r for r in results if r is not None]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> SendGridMailer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- one request ---------------------------------------------------------------

    def _send_group(self, group: MailGroup, halt: _Halt) -> _Outcome:
        stopped = halt.reason
        if stopped is not None:
            return _Outcome(
                SendStatus.NOT_ATTEMPTED,
                error=f"not attempted: {stopped.error}",
                retry_after=stopped.retry_after,
                auth_error=stopped.auth_error,
            )
        try:
            body = json.dumps(build_mail(group), ensure_ascii=False, separators=(",", ":"))
        except SendGridException as exc:
            return _Outcome(
                SendStatus.FAILED, error=self._scrub(f"refused by the SendGrid helpers: {exc!r}")
            )
        outcome = self._post(body.encode())
        if outcome.status not in (SendStatus.SENT, SendStatus.FAILED):
            halt.set(outcome)
        return outcome

    def _post(self, body: bytes) -> _Outcome:
        try:
            response = self._client.post(self._url, content=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return _Outcome(
                SendStatus.RETRY,
                error=self._scrub(
                    f"cannot connect to SendGrid at {self._url}: {exc!r}; check "
                    "NEWSLETTER_SENDGRID_API_URL and the network"
                ),
            )
        except (httpx.WriteError, httpx.WriteTimeout) as exc:
            # The body never arrived whole: SendGrid cannot have acted on it.
            return _Outcome(
                SendStatus.RETRY,
                error=self._scrub(f"connection failed while sending the request: {exc!r}"),
            )
        except httpx.RequestError as exc:
            # Read error, read time-out, remote disconnect, undecodable answer: the
            # request was sent and may have been accepted. The ledger reconciles it
            # from SendGrid events carrying custom_args.delivery_id; we never resend.
            return _Outcome(
                SendStatus.UNKNOWN,
                error=self._scrub(
                    f"no answer after the request was sent ({type(exc).__name__}: {exc}); "
                    "it may have been accepted"
                ),
            )
        return self._outcome(response)

    def _outcome(self, response: httpx.Response) -> _Outcome:
        status = response.status_code
        if 200 <= status < 300:
            return _Outcome(
                SendStatus.SENT, provider_message_id=response.headers.get("X-Message-Id")
            )
        detail = self._scrub(_error_text(response))
        if status in (401, 403):
            message = (
                f"SendGrid refused the API key (HTTP {status}: {detail}); fix "
                "NEWSLETTER_SENDGRID_API_KEY (it needs the Mail Send permission), then "
                "resume sending"
            )
            return _Outcome(SendStatus.RETRY, error=message, auth_error=message)
        if status in (400, 413):
            return _Outcome(SendStatus.FAILED, error=f"HTTP {status}: {detail}")
        if status == 429:
            # Without a reset header, wait a minute anyway: a 429 always pauses every worker.
            retry_after = self._retry_after(response)
            return _Outcome(
                SendStatus.RETRY,
                error=f"HTTP 429 rate limited: {detail}",
                retry_after=DEFAULT_RATE_LIMIT_WAIT if retry_after is None else retry_after,
            )
        if status >= 500:
            return _Outcome(
                SendStatus.RETRY,
                error=f"HTTP {status}: {detail}",
                retry_after=self._retry_after(response),
            )
        return _Outcome(
            SendStatus.RETRY,
            error=(
                f"unexpected HTTP {status} from {self._url}: {detail}; check "
                "NEWSLETTER_SENDGRID_API_URL"
            ),
        )

    def _retry_after(self, response: httpx.Response) -> float | None:
        return parse_retry_after(response.headers, now=self._clock())

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "[api key]")
        return text[:MAX_ERROR_CHARS]


def parse_retry_after(headers: httpx.Headers, *, now: float) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or
    ``X-RateLimit-Reset`` (epoch seconds); ``None`` when neither is usable."""
    value = headers.get("Retry-After")
    if value:
        with contextlib.suppress(ValueError):  # not a number of seconds: maybe an HTTP date
            return max(0.0, float(value))
        with contextlib.suppress(TypeError, ValueError):  # neither: try the reset header
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            return None
    return None


def _error_text(response: httpx.Response) -> str:
    """SendGrid's ``errors[].message`` (with the field), else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        parts = []
        for item in data["errors"]:
            if not isinstance(item, dict):
                continue
            message = str(item.get("message") or "")
            field = item.get("field")
            parts.append(f"{message} (field {field})" if field not in (None, "null") else message)
        if parts:
            return "; ".join(parts)
    return response.text[:300] or response.reason_phrase
