"""The ``smtp`` backend: RFC 5322 messages over one reused SMTP connection.

``NEWSLETTER_SMTP_URL`` forms::

    smtp://user:pass@mail.example:587      STARTTLS when the server offers it
    smtps://user:pass@mail.example:465     implicit TLS
    smtp://relay.local:25?starttls=false   never STARTTLS (a trusted local relay)

Other query options: ``starttls=required`` (refuse to send without it), ``timeout=30``
(seconds per network operation), ``batch=1`` (messages per ``send_batch``: how many
the dispatcher hands over between two ledger commits), ``helo=name``.

Outcomes, per message (each message is its own SMTP transaction)::

    4xx at MAIL, RCPT or end of DATA     RETRY  (ledger: queued again, backoff + jitter)
    5xx at MAIL, RCPT or end of DATA     FAILED (permanent for that recipient)
    connection lost before DATA          RETRY  (the server never had the message)
    connection lost or timed out after   UNKNOWN (it may have been accepted: never resent
      DATA began                                  automatically; see ``newsletter.ledger``)
    authentication refused (535, ...)    SMTPAuthError (a ProviderAuthError, carrying the
                                           outcomes already known): sending halts
    cannot connect / TLS fails           RETRY for the message, NOT_ATTEMPTED for the rest
    a non-ASCII address, and the server  FAILED for that message (a non-ASCII domain alone
      does not offer SMTPUTF8              is sent IDNA-encoded); with SMTPUTF8 it is sent

Reconnect policy: the connection is kept between batches. A connection found dead before
a message was handed over (idle time-out) is reopened once, right away. After a connection
is lost, the rest of that batch is not attempted (NOT_ATTEMPTED: requeued after a short
pause without counting an attempt): a server that drops connections is given time; the
next batch reconnects.

Why ``batch=1`` by default: the dispatcher marks a whole batch ``sending`` before handing it
over, so a worker killed mid-batch leaves the whole batch ``unknown``. With one message per
batch only the message in flight at the crash is ``unknown``; the cost is one small ledger
commit per message, far below an SMTP round trip. Raise it for a fast local relay.

The provider message id kept in the ledger is our ``Message-ID`` (the same for every
relay, and what a bounce quotes).
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.bounces.status import Severity, classify_reply
from newsletter.delivery.base import BatchAuthError, OutgoingEmail, SendResult, SendStatus
from newsletter.delivery.mime import BuiltMessage, build_checked
from newsletter.errors import ConfigurationError, ProviderAuthError

LOOPBACK = ("127.0.0.1", "::1", "localhost")
# The bytes (CRLF line ends, headers folded only past RFC 5321's 998 so a long
# List-Unsubscribe URL stays one plain header) come from ``mime.build_bytes``.


class SMTPAuthError(BatchAuthError):
    """The SMTP server refused our login (or TLS policy) part-way through a batch."""


@dataclass(frozen=True)
class SMTPConfig:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: str = "auto"  # auto (when offered) | required | never
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    batch: int = 1
    helo: str | None = None


def parse_smtp_url(url: str) -> SMTPConfig:
    """``smtp[s]://[user:pass@]host[:port][?starttls=..&timeout=..&batch=..&helo=..]``."""
    variable = "NEWSLETTER_SMTP_URL"
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigurationError(
            variable, "must look like smtp://user:pass@host:587 or smtps://host:465"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - {"starttls", "timeout", "batch", "helo"})
    if unknown:
        raise ConfigurationError(
            variable, f"unknown option {unknown[0]!r}; known: starttls, timeout, batch, helo"
        )
    starttls = {"true": "auto", "auto": "auto", "required": "required", "false": "never"}.get(
        query.get("starttls", "auto").lower()
    )
    if starttls is None:
        raise ConfigurationError(variable, "starttls must be true, required or false")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
        timeout = float(query.get("timeout", "30"))
        batch = int(query.get("batch", "1"))
    except ValueError as exc:
        raise ConfigurationError(variable, f"bad number in the URL: {exc}") from None
    if timeout <= 0 or batch < 1:
        raise ConfigurationError(variable, "timeout must be > 0 and batch >= 1")
    return SMTPConfig(
        host=parts.hostname,
        port=port,
        implicit_tls=parts.scheme == "smtps",
        starttls="never" if parts.scheme == "smtps" else starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=timeout,
        batch=batch,
        helo=query.get("helo"),
    )


class _Lost(Exception):
    """The connection died; ``handed_over`` tells whether DATA had begun."""

    def __init__(self, handed_over: bool, reason: str) -> None:
        super().__init__(reason)
        self.handed_over = handed_over
        self.reason = reason


class SMTPMailer:
    name = "smtp"

    def __init__(self, config: SMTPConfig, *, tls: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.max_batch = config.batch
        self._tls = tls
        self._conn: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> SMTPMailer:
        return cls(parse_smtp_url(url))

    # ---- the port ----------------------------------------------------------------------

    def send_batch(self, messages: Sequence[OutgoingEmail]) -> list[SendResult]:
        with self._lock:
            results: list[SendResult] = []
            for index, message in enumerate(messages):
                try:
                    result = self._send_with_reconnect(message)
                except ProviderAuthError as exc:
                    known: list[SendResult | None] = list(results)
                    known += [None] * (len(messages) - index)
                    raise SMTPAuthError(str(exc), known) from exc
                except _Lost as lost:
                    status = SendStatus.UNKNOWN if lost.handed_over else SendStatus.RETRY
                    results.append(SendResult(message.delivery_id, status, error=lost.reason))
                    reason = f"smtp: not attempted after a lost connection ({lost.reason})"
                    results.extend(
                        SendResult(m.delivery_id, SendStatus.NOT_ATTEMPTED, error=reason)
                        for m in messages[index + 1 :]
                    )
                    break
                results.append(result)
            return results

    def close(self) -> None:
        with self._lock:
            self._drop(quit_first=True)

    # ---- one message -------------------------------------------------------------------

    def _send_with_reconnect(self, message: OutgoingEmail) -> SendResult:
        reused = self._conn is not None
        try:
            return self._send_one(self._connection(), message)
        except _Lost as lost:
            if lost.handed_over or not reused:
                raise
        # The kept connection had died while idle; nothing was handed over: reopen once.
        return self._send_one(self._connection(), message)

    def _send_one(self, conn: smtplib.SMTP, message: OutgoingEmail) -> SendResult:
        options: list[str] = []
        utf8 = False
        if not (message.from_email.isascii() and message.to_email.isascii()):
            if conn.has_extn("smtputf8"):
                options = ["SMTPUTF8", "BODY=8BITMIME"]
                utf8 = True
            else:
                try:
                    message = _ascii_addresses(message)
                except ValueError as exc:
                    host = f"{self.config.host}:{self.config.port}"
                    return SendResult(
                        message.delivery_id,
                        SendStatus.FAILED,
                        error=f"smtp: {exc}, and {host} does not offer SMTPUTF8; use a relay "
                        "that supports internationalised email",
                    )
        # Built once; the bytes sent are the bytes checked (``mime.build_checked``).
        built: BuiltMessage | str = build_checked(message, utf8=utf8)
        if isinstance(built, BuiltMessage) and not options and not built.data.isascii():
            # An 8-bit body (UTF-8 text as 8bit): declare it (RFC 6152) where the
            # server offers 8BITMIME, else re-encode the parts 7-bit safe (base64).
            if conn.has_extn("8bitmime"):
                options = ["BODY=8BITMIME"]
            else:
                same_id = replace(message, message_id=built.message_id)
                built = build_checked(same_id, eight_bit=False)
        if isinstance(built, str):  # nothing was handed over: this email alone fails
            error = f"smtp: {built}"[:1000]
            return SendResult(message.delivery_id, SendStatus.FAILED, error=error)
        data, message_id = built.data, built.message_id
        try:
            stage = "mail"
            code, reply = conn.mail(message.return_path or message.from_email, options)
            if code == 250:
                stage = "rcpt"
                code, reply = conn.rcpt(message.to_email)
            if code not in (250, 251):
                self._reset(conn)
                return _refused(message.delivery_id, code, reply, stage=stage)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise _Lost(False, f"smtp: connection lost before the message: {exc}") from None
        try:
            code, reply = conn.data(data)  # raises only when DATA itself is refused
        except smtplib.SMTPDataError as exc:
            self._reset(conn)
            return _refused(message.delivery_id, exc.smtp_code, exc.smtp_error, stage="data")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise _Lost(True, f"smtp: connection lost during the message: {exc}") from None
        if code != 250:
            self._reset(conn)
            return _refused(message.delivery_id, code, reply, stage="data")
        return SendResult(message.delivery_id, SendStatus.SENT, provider_message_id=message_id)

    # ---- the connection ----------------------------------------------------------------

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None:
            return self._conn
        config = self.config
        helo = config.helo or socket.gethostname()
        try:
            if config.implicit_tls:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    config.host,
                    config.port,
                    local_hostname=helo,
                    timeout=config.timeout,
                    context=self._context(),
                )
            else:
                conn = smtplib.SMTP(
                    config.host, config.port, local_hostname=helo, timeout=config.timeout
                )
            conn.ehlo_or_helo_if_needed()
            self._secure(conn)
            self._login(conn)
        except ProviderAuthError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            reason = f"smtp: cannot connect to {config.host}:{config.port}: {exc}"
            raise _Lost(False, reason) from None
        self._conn = conn
        return conn

    def _context(self) -> ssl.SSLContext:
        return self._tls or ssl.create_default_context()

    def _secure(self, conn: smtplib.SMTP) -> None:
        config = self.config
        if config.implicit_tls or config.starttls == "never":
            return
        if conn.has_extn("starttls"):
            conn.starttls(context=self._context())
            conn.ehlo()
        elif config.starttls == "required":
            conn.close()
            raise ProviderAuthError(
                f"{config.host}:{config.port} does not offer STARTTLS and the SMTP URL says "
                "starttls=required; fix the server or the URL"
            )

    def _login(self, conn: smtplib.SMTP) -> None:
        config = self.config
        if config.username is None:
            return
        encrypted = config.implicit_tls or isinstance(conn.sock, ssl.SSLSocket)
        if not encrypted and config.starttls != "never" and config.host not in LOOPBACK:
            conn.close()
            raise ProviderAuthError(
                f"{config.host}:{config.port} offers no TLS, so the SMTP password would go "
                "in clear text; use smtps:// or add ?starttls=false to allow it"
            )
        try:
            conn.login(config.username, config.password or "")
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError) as exc:
            conn.close()
            raise ProviderAuthError(
                f"the SMTP server refused the login for {config.username!r}: {_text(exc)}; "
                "check NEWSLETTER_SMTP_URL"
            ) from None

    def _reset(self, conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self, *, quit_first: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if quit_first:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                conn.quit()
        conn.close()


def _ascii_addresses(message: OutgoingEmail) -> OutgoingEmail:
    """``message`` with its addresses' domains IDNA-encoded (``bücher.example`` becomes
    ``xn--bcher-kva.example``). Raises ``ValueError`` for a non-ASCII local part, which
    only SMTPUTF8 can carry."""
    return replace(
        message,
        from_email=_ascii_address(message.from_email),
        to_email=_ascii_address(message.to_email),
    )


def _ascii_address(address: str) -> str:
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise ValueError(f"the address {address!r} has a non-ASCII local part")
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        raise ValueError(f"the address {address!r} has a domain IDNA cannot encode") from None


def _refused(delivery_id: int, code: int, reply: bytes | str, *, stage: str = "rcpt") -> SendResult:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    error = f"smtp {code}: {text}"
    if 500 <= code < 600:
        refused = stage != "mail" and classify_reply(code, text, stage=stage) is Severity.HARD
        return SendResult(delivery_id, SendStatus.FAILED, error=error, address_refused=refused)
    return SendResult(delivery_id, SendStatus.RETRY, error=error)


def _text(exc: smtplib.SMTPException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        return f"{exc.smtp_code} " + (
            error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        )
    return str(exc)
