"""The SendGrid adapter: the only module that imports ``sendgrid``.

Payloads are the dicts the official helpers (``sendgrid.helpers.mail``) build, written
out directly (``build_mail``), and are posted to
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
import functools
import json
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import format_datetime, parseaddr, parsedate_to_datetime
from typing import Any

import httpx
import idna
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException, SendGridException

from newsletter.backoff import bounded_wait
from newsletter.delivery.base import BatchAuthError, OutgoingEmail, SendResult, SendStatus
from newsletter.delivery.personalization import (
    MAX_RECIPIENTS,
    MailGroup,
    Recipient,
    group_messages,
    singles,
)

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
    http_status: int | None = None
    fields: tuple[str, ...] = ()  # SendGrid's errors[].field, on a 400


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

    The same dict the official helpers (``sendgrid.helpers.mail.Mail``) build, written
    out directly: the helpers cost more per recipient than everything else in a batched
    request (``test_sendgrid_body`` proves the two equal). Raises ``SendGridException``
    where the helpers do: content that starts like a SendGrid API key.
    """
    first = group.first
    body: dict[str, Any] = {"from": _address(first.from_email, first.from_name)}
    body["subject"] = group.subject
    body["personalizations"] = [
        _personalization(r.message, r.substitutions) for r in group.recipients
    ]
    # text/plain must come before text/html.
    content = [
        {"type": kind, "value": _content(value)}
        for kind, value in (("text/plain", group.text), ("text/html", group.html))
        if value
    ]
    if content:
        body["content"] = content
    categories = list(dict.fromkeys(first.categories))
    if categories:
        body["categories"] = categories
    if first.reply_to:
        body["reply_to"] = _address(first.reply_to, None)
    return body


# The helpers' check (``ValidateApiKey``): a content value that *starts* like an API key.
_API_KEY_START = re.compile(r"SG\.[0-9a-zA-Z]+\.[0-9a-zA-Z]+")


def _content(value: str) -> str:
    if _API_KEY_START.match(value):
        raise ApiKeyIncludedException()
    return value


def _address(address: str, name: str | None) -> dict[str, str]:
    """What ``sendgrid.helpers.mail.Email(address, name).get()`` gives."""
    if name:
        return {"name": name, "email": address}
    # Without a name the helper parses ``address`` as "Name <address>".
    parsed_name, parsed = parseaddr(address)
    if "@" not in parsed:
        parsed_name, parsed = parsed, ""
    out: dict[str, str] = {}
    if parsed_name:
        out["name"] = parsed_name
    if parsed:
        out["email"] = parsed
    return out


def _personalization(
    message: OutgoingEmail, substitutions: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    headers = dict(message.headers)
    headers[DELIVERY_HEADER] = str(message.delivery_id)
    if message.message_id:
        headers["Message-ID"] = f"<{message.message_id.strip('<>')}>"
    if message.date is not None:
        headers["Date"] = _date_header(message.date)
    out: dict[str, Any] = {"to": [_address(message.to_email, message.to_name)]}
    out["headers"] = headers
    if substitutions:
        out["substitutions"] = dict(substitutions)
    out["custom_args"] = {"delivery_id": str(message.delivery_id)}
    return out


_last_date: tuple[datetime | None, str] = (None, "")


def _date_header(date: datetime) -> str:
    """``format_datetime(date)``, remembered for the last ``date`` object: a batch's
    emails share one. By identity, not equality: equal instants in other zones format
    differently. (One tuple, replaced whole: safe across the pool's threads.)"""
    global _last_date
    last, text = _last_date
    if last is date:
        return text
    text = format_datetime(date)
    _last_date = (date, text)
    return text


# What SendGrid's ``format: email`` takes: an ASCII address (the usual JSON-schema
# email pattern); non-ASCII domains must be IDNA-encoded first.
_SENDGRID_ADDRESS = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]*[a-z0-9])?",
    re.IGNORECASE,
)
_CULPRIT_FIELD = re.compile(r"personalizations\.(\d+)(?:\.|$)")


@functools.lru_cache(maxsize=8192)
def sendgrid_address(address: str) -> str:
    """``address`` as SendGrid takes it: the domain IDNA-encoded (IDNA 2008, UTS 46), so
    ``juergen@bücher.example`` becomes ``juergen@xn--bcher-kva.example``.

    Raises ``ValueError`` for an address SendGrid cannot take (a non-ASCII local part:
    SendGrid has no SMTPUTF8).

    Remembered for the last few thousand addresses: the dispatcher's check (``problem``)
    and ``sendgrid_ready`` ask for the same ones, and a batch shares its sender.
    """
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise ValueError(
            f"SendGrid cannot take {address!r}: its local part is not ASCII (use the smtp "
            "backend with a relay that offers SMTPUTF8)"
        )
    try:
        ascii_domain = _idna_domain(domain)
    except UnicodeError as exc:
        raise ValueError(f"the domain of {address!r} cannot be IDNA-encoded: {exc}") from None
    encoded = f"{local}@{ascii_domain}"
    if not _SENDGRID_ADDRESS.fullmatch(encoded):
        raise ValueError(f"SendGrid cannot take the address {address!r}")
    return encoded


@functools.lru_cache(maxsize=4096)
def _idna_domain(domain: str) -> str:
    """IDNA 2008 (UTS 46) of one domain: a batch holds few distinct domains, and
    ``idna.encode`` costs more than everything else done per address."""
    return idna.encode(domain, uts46=True).decode("ascii")


def sendgrid_ready(message: OutgoingEmail) -> OutgoingEmail:
    """``message`` with every address as SendGrid takes it; ``ValueError`` if it cannot."""
    to_email = sendgrid_address(message.to_email)
    from_email = sendgrid_address(message.from_email)
    reply_to = sendgrid_address(message.reply_to) if message.reply_to else None
    if (to_email, from_email, reply_to) == (message.to_email, message.from_email, message.reply_to):
        return message  # the common case: nothing to encode, no copy
    return replace(message, to_email=to_email, from_email=from_email, reply_to=reply_to)


def _culprits(fields: Sequence[str], size: int) -> set[int]:
    """Which personalizations a 400's ``errors[].field`` names (``personalizations.3.to``)."""
    found = set()
    for name in fields:
        match = _CULPRIT_FIELD.match(name)
        if match and int(match.group(1)) < size:
            found.add(int(match.group(1)))
    return found


def _single(recipient: Recipient) -> MailGroup:
    message = recipient.message
    return MailGroup(
        message.subject, message.html, message.text, (Recipient(recipient.index, message, ()),)
    )


class SendGridMailer:
    """Sends ``OutgoingEmail`` batches through SendGrid's v3 Mail Send API."""

    name = "sendgrid"
    # Emails per ``send_batch`` (the dispatcher's chunk): up to ``concurrency`` requests
    # of at most 1,000 personalizations each (SendGrid's limit), sent from the pool.
    max_batch: int

    @staticmethod
    def problem(message: OutgoingEmail) -> str | None:
        """Why SendGrid cannot take ``message`` (checked by the dispatcher beforehand)."""
        try:
            # The checks of ``sendgrid_ready``, without building the message again.
            for address in (message.to_email, message.from_email, message.reply_to):
                if address:
                    sendgrid_address(address)
        except ValueError as exc:
            return str(exc)
        return None

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
        self.max_batch = MAX_RECIPIENTS * concurrency
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
        results: list[SendResult | None] = [None] * len(messages)
        # An address SendGrid cannot take fails alone, before any request.
        ready: list[OutgoingEmail] = []
        positions: list[int] = []
        for index, message in enumerate(messages):
            try:
                ready.append(sendgrid_ready(message))
            except ValueError as exc:
                results[index] = SendResult(
                    message.delivery_id, SendStatus.FAILED, error=f"sendgrid: {exc}"
                )
                continue
            positions.append(index)
        groups = group_messages(ready) if self._batch else singles(ready)
        halt = _Halt()
        if len(groups) == 1 or self._concurrency == 1:
            outcomes = [self._send_group(g, halt) for g in groups]
        else:
            outcomes = list(self._pool.map(lambda g: self._send_group(g, halt), groups))
        flat: list[_Outcome] = []
        for group, per_recipient in zip(groups, outcomes, strict=True):
            for recipient, outcome in zip(group.recipients, per_recipient, strict=True):
                flat.append(outcome)
                if outcome.auth_error is not None:
                    continue
                results[positions[recipient.index]] = SendResult(
                    delivery_id=recipient.message.delivery_id,
                    status=outcome.status,
                    provider_message_id=outcome.provider_message_id,
                    error=outcome.error,
                    retry_after=outcome.retry_after,
                )
        auth = next((o.auth_error for o in flat if o.auth_error is not None), None)
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

    def _send_group(self, group: MailGroup, halt: _Halt) -> list[_Outcome]:
        """One outcome per recipient of ``group``.

        A 400 on a batched request must not fail recipients that did not cause it: the
        personalizations SendGrid names (``errors[].field``) fail and the rest is resent
        once as one request; when it names none, each recipient is sent alone once.
        """
        outcome = self._request(group, halt)
        size = len(group.recipients)
        if outcome.http_status != 400 or size == 1:
            return [outcome] * size
        culprits = _culprits(outcome.fields, size)
        if not culprits:
            return [self._request(_single(r), halt) for r in group.recipients]
        rest = tuple(r for i, r in enumerate(group.recipients) if i not in culprits)
        again = self._request(replace(group, recipients=rest), halt) if rest else outcome
        return [outcome if i in culprits else again for i in range(size)]

    def _request(self, group: MailGroup, halt: _Halt) -> _Outcome:
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
            return _Outcome(
                SendStatus.FAILED,
                error=f"HTTP {status}: {detail}",
                http_status=status,
                fields=_error_fields(response),
            )
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


# X-RateLimit-Reset is epoch seconds; a value this large can only be milliseconds, and a
# value this small only a number of seconds to wait.
_EPOCH_MILLISECONDS = 1e11
_DELTA_SECONDS = 1e9


def parse_retry_after(headers: httpx.Headers, *, now: float) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or
    ``X-RateLimit-Reset`` (epoch seconds; epoch milliseconds and plain seconds are
    recognised); ``None`` when neither is usable. Never more than
    ``backoff.MAX_PROVIDER_WAIT``."""
    value = headers.get("Retry-After")
    if value:
        seconds = _number(value)
        if seconds is not None:
            return bounded_wait(seconds)
        with contextlib.suppress(TypeError, ValueError, OverflowError):  # an HTTP date?
            return bounded_wait(parsedate_to_datetime(value).timestamp() - now)
    reset = _number(headers.get("X-RateLimit-Reset") or "")
    if reset is None:
        return None
    if reset >= _EPOCH_MILLISECONDS:
        reset /= 1000.0
    if reset < _DELTA_SECONDS:
        return bounded_wait(reset)
    return bounded_wait(reset - now)


def _number(text: str) -> float | None:
    """A finite number, or ``None`` (``inf``, ``nan`` and words are not waits)."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _error_fields(response: httpx.Response) -> tuple[str, ...]:
    """The ``errors[].field`` names of a SendGrid error answer."""
    try:
        data = response.json()
    except ValueError:
        return ()
    if not isinstance(data, dict) or not isinstance(data.get("errors"), list):
        return ()
    return tuple(
        str(item["field"])
        for item in data["errors"]
        if isinstance(item, dict) and isinstance(item.get("field"), str)
    )


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
