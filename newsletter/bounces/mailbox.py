"""The bounce mailbox over IMAP (stdlib ``imaplib``): list, read, move aside.

``NEWSLETTER_BOUNCE_IMAP_URL`` forms::

    imaps://user:pass@imap.example/INBOX             implicit TLS (port 993)
    imap://user:pass@imap.example:143/INBOX          STARTTLS (required off loopback)
    imap://user:pass@127.0.0.1:1143/INBOX?starttls=false   plain, loopback only

Query options: ``processed=Processed`` and ``unparsed=Unparsed`` name the folders reports
are moved to once handled (created when missing); ``timeout=30``.

Messages are moved with ``UID MOVE`` when the server offers it, else ``UID COPY`` then
``\\Deleted`` and ``EXPUNGE``. Nothing is ever deleted without a copy elsewhere.
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.errors import ConfigurationError, NewsletterError

log = logging.getLogger(__name__)

VARIABLE = "NEWSLETTER_BOUNCE_IMAP_URL"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class MailboxError(NewsletterError):
    """The bounce mailbox cannot be read; the message says what to check."""


@dataclass(frozen=True)
class IMAPConfig:
    host: str
    port: int
    tls: bool
    starttls: bool
    username: str
    password: str
    folder: str = "INBOX"
    processed: str = "Processed"
    unparsed: str = "Unparsed"
    timeout: float = 30.0


def parse_imap_url(url: str) -> IMAPConfig:
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps") or not parts.hostname:
        raise ConfigurationError(VARIABLE, "must look like imaps://user:pass@host/INBOX")
    if not parts.username:
        raise ConfigurationError(VARIABLE, "needs a user name: imaps://user:pass@host/INBOX")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - {"processed", "unparsed", "timeout", "starttls"})
    if unknown:
        raise ConfigurationError(
            VARIABLE,
            f"unknown option {unknown[0]!r}; known: processed, unparsed, timeout, starttls",
        )
    try:
        port = parts.port or (993 if parts.scheme == "imaps" else 143)
        timeout = float(query.get("timeout", "30"))
    except ValueError as exc:
        raise ConfigurationError(VARIABLE, f"bad number in the URL: {exc}") from None
    starttls = parts.scheme == "imap" and query.get("starttls", "true").lower() != "false"
    if parts.scheme == "imap" and not starttls and parts.hostname not in LOOPBACK:
        raise ConfigurationError(
            VARIABLE, "starttls=false sends the password in clear text; only on loopback"
        )
    return IMAPConfig(
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "imaps",
        starttls=starttls,
        username=unquote(parts.username),
        password=unquote(parts.password or ""),
        folder=unquote(parts.path.lstrip("/")) or "INBOX",
        processed=query.get("processed", "Processed"),
        unparsed=query.get("unparsed", "Unparsed"),
        timeout=timeout,
    )


class IMAPMailbox:
    """One session on the bounce folder. Use as a context manager."""

    def __init__(self, config: IMAPConfig) -> None:
        self.config = config
        self._conn: imaplib.IMAP4 | None = None

    def __enter__(self) -> IMAPMailbox:
        config = self.config
        try:
            if config.tls:
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    config.host,
                    config.port,
                    ssl_context=ssl.create_default_context(),
                    timeout=config.timeout,
                )
            else:
                conn = imaplib.IMAP4(config.host, config.port, timeout=config.timeout)
                if config.starttls:
                    conn.starttls(ssl.create_default_context())
            conn.login(config.username, config.password)
            status, _ = conn.select(_quote(config.folder))
            if status != "OK":
                raise MailboxError(
                    f"the folder {config.folder!r} cannot be opened; check {VARIABLE}"
                )
            self._conn = conn
        except (imaplib.IMAP4.error, OSError, ssl.SSLError) as exc:
            raise MailboxError(
                f"cannot read the bounce mailbox at {config.host}:{config.port} as "
                f"{config.username!r}: {exc}; check {VARIABLE}"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
            conn.logout()
        except (imaplib.IMAP4.error, OSError) as exc:
            # The messages are already moved; a connection that breaks while saying goodbye
            # loses nothing, so it is not an error of the run, but it is kept for --verbose.
            log.debug("bounces: closing the mailbox connection failed: %r", exc)

    @property
    def conn(self) -> imaplib.IMAP4:
        assert self._conn is not None, "use IMAPMailbox as a context manager"
        return self._conn

    def messages(self) -> Iterator[tuple[str, bytes]]:
        """``(uid, raw message)`` for every message in the folder, oldest first."""
        status, data = self.conn.uid("SEARCH", "ALL")
        if status != "OK":
            raise MailboxError(f"IMAP SEARCH failed: {data!r}")
        for number in (data[0] or b"").split():
            uid = number.decode("ascii")
            status, fetched = self.conn.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next(
                (item[1] for item in fetched if isinstance(item, tuple) and len(item) > 1), None
            )
            if status == "OK" and isinstance(raw, bytes):
                yield uid, raw

    def move(self, uid: str, folder: str) -> None:
        """Move one message to ``folder`` (created when missing)."""
        conn = self.conn
        conn.create(_quote(folder))  # "already exists" is a NO: fine
        if b"MOVE" in _capabilities(conn):
            status, data = conn.uid("MOVE", uid, _quote(folder))
            if status == "OK":
                return
        status, data = conn.uid("COPY", uid, _quote(folder))
        if status != "OK":
            raise MailboxError(f"cannot copy message {uid!r} to {folder!r}: {data!r}")
        conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
        conn.expunge()


def _capabilities(conn: imaplib.IMAP4) -> set[bytes]:
    return {c.encode().upper() for c in conn.capabilities}


def _quote(folder: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./-]+", folder):
        return folder
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
