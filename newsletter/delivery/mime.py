"""Build the RFC 5322 message shared by the SMTP and outbox backends, and prove it sound."""

from __future__ import annotations

import base64
import random
import re
import sys
from dataclasses import dataclass
from email import policy
from email.errors import MessageError
from email.header import Header, decode_header, make_header
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import Parser
from email.utils import format_datetime, formataddr, make_msgid

from newsletter.delivery.base import OutgoingEmail
from newsletter.one_line import ENCODED_WORD_OPENER, one_line

DELIVERY_HEADER = "X-Newsletter-Delivery"


class _CachedHeaderRegistry(HeaderRegistry):
    """``HeaderRegistry`` that makes each header class once.

    The stock registry builds a new class (``type(...)``) for every header it creates or
    parses: a third of the time spent building a message. Same classes, same output.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        found = self._classes.get(key)
        if found is None:
            found = self._classes[key] = super().__getitem__(key)
        return found


_HEADERS = _CachedHeaderRegistry()
# RFC 5322 allows 998-character lines. With the default 78, a long List-Unsubscribe URL
# would be folded into RFC 2047 encoded-words, which breaks one-click unsubscribe.
MIME_POLICY = policy.SMTP.clone(max_line_length=998, header_factory=_HEADERS)
_READ_POLICY = policy.default.clone(header_factory=_HEADERS)
_RAW_HEADER_PARSER = Parser(policy=policy.compat32)
# What building or serializing a message raises on a value it cannot carry.
BUILD_ERRORS = (MessageError, UnicodeError, ValueError, TypeError, IndexError)


def build_mime(message: OutgoingEmail) -> EmailMessage:
    """A multipart/alternative message: plain text first, then HTML."""
    mime = EmailMessage(policy=MIME_POLICY)
    mime["Subject"] = one_line(message.subject)
    mime["From"] = formataddr((one_line(message.from_name or ""), message.from_email))
    to_name = one_line(message.to_name or "")
    # username/domain, not addr_spec: a non-ASCII local part (sent with SMTPUTF8) is
    # refused by the addr_spec parser.
    local, _, domain = message.to_email.rpartition("@")
    mime["To"] = (
        str(Address(display_name=to_name, username=local, domain=domain))
        if to_name
        else message.to_email
    )
    if message.reply_to:
        mime["Reply-To"] = message.reply_to
    if message.date is not None:
        mime["Date"] = format_datetime(message.date)
    domain = message.from_email.rpartition("@")[2] or "localhost"
    mime["Message-ID"] = (
        f"<{message.message_id.strip('<>')}>" if message.message_id else make_msgid(domain=domain)
    )
    mime[DELIVERY_HEADER] = str(message.delivery_id)
    for name, value in message.headers.items():
        mime[name] = value
    mime.set_content(message.text)
    mime.add_alternative(message.html, subtype="html")
    return mime


def _expected_headers(message: OutgoingEmail) -> list[str]:
    names = ["subject", "from", "to", "message-id", DELIVERY_HEADER.lower()]
    if message.reply_to:
        names.append("reply-to")
    if message.date is not None:
        names.append("date")
    names += [name.lower() for name in message.headers]
    return sorted([*names, "mime-version", "content-type"])


def mime_problem(message: OutgoingEmail) -> str | None:
    """Why ``message`` cannot go out as RFC 5322 bytes, or ``None`` when it can.

    Builds the bytes the backends send (``build_bytes``), reads their header block back
    like a receiving server and checks that exactly the headers we meant are there, each
    on one line, with the subject and recipient we meant: nothing a value holds can add a
    header. The body cannot be replaced either: the parts are written after the header
    block, and the boundary is one neither part contains.
    """
    # Both header forms a backend may send: RFC 2047 words, and raw UTF-8 (SMTPUTF8).
    plain = all(
        v.isascii()
        for v in (
            message.subject,
            message.to_name or "",
            message.from_name or "",
            *message.headers.values(),
        )
    )
    for utf8 in (False,) if plain else (False, True):
        problem = _bytes_problem(message, utf8=utf8)
        if problem is not None:
            return problem
    return None


def _bytes_problem(message: OutgoingEmail, *, utf8: bool) -> str | None:
    try:
        # The header block ``build_bytes`` writes (the parts follow it unchanged).
        block, _ = _header_block(message, utf8, _boundary((message.text, message.html)))
        return _read_back(message, block.encode("utf-8"))
    except BUILD_ERRORS as exc:  # building, or reading back what a value decodes to
        return _cannot_build(exc)


def _cannot_build(exc: Exception) -> str:
    return f"cannot build the email: {type(exc).__name__}: {exc}"


def build_checked(
    message: OutgoingEmail, *, utf8: bool = False, eight_bit: bool = True
) -> BuiltMessage | str:
    """``build_bytes``, and the header block of those very bytes read back as
    ``mime_problem`` reads it: the built message, or (a ``str``) why it cannot go out.

    What a backend sends or writes: each email is built once and the bytes that leave
    are the bytes checked (``mime_problem`` checks every form a backend may pick; a
    backend checks the one it picked).
    """
    try:
        built = build_bytes(message, utf8=utf8, eight_bit=eight_bit)
        problem = _read_back(message, _head(built.data))
    except BUILD_ERRORS as exc:
        return _cannot_build(exc)
    return built if problem is None else problem


def _head(data: bytes) -> bytes:
    """The header block of built bytes and its empty line: every parser's headers end at
    the first empty line, so up to the first CRLF CRLF (or earlier, where a bare CR or LF
    pair would end them) is all it reads."""
    return data[: data.find(b"\r\n\r\n") + 4]


_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _decoded(value: str) -> str:
    """A raw header value as a reader sees it: unfolded (RFC 5322), then RFC 2047
    words decoded -- a CR or LF left over is one a value smuggled in."""
    unfolded = _FOLD.sub("", value)
    if ENCODED_WORD_OPENER not in unfolded:
        return unfolded
    return str(make_header(decode_header(unfolded)))


# A header line every parser reads one way: a field name (printable ASCII but ":"), the
# colon, then printable ASCII -- no CR, LF or tab, no fold, no encoded word to decode.
_SIMPLE_FIELD = re.compile(r"([!-9;-~]+):[ \t]*([ -~]*)")


def _simple_fields(block: str) -> list[tuple[str, str]] | None:
    """The (name, value) pairs of a header block made only of simple lines, read without
    the parser (which gives the same pairs: ``test_mime_bytes`` proves it); ``None``
    when any line is not simple (the parser reads that block)."""
    if not block.endswith("\r\n\r\n") or ENCODED_WORD_OPENER in block:
        return None
    fields = []
    for line in block[:-4].split("\r\n"):
        simple = _SIMPLE_FIELD.fullmatch(line)
        if simple is None:
            return None
        fields.append((simple.group(1), simple.group(2)))
    return fields


def _first(fields: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in fields if key.lower() == name), None)


def _content_type(value: str | None) -> str:
    """``Message.get_content_type`` of a header value (``None``: no such header)."""
    kind = (value or "text/plain").partition(";")[0].strip().lower()
    return kind if kind.count("/") == 1 else "text/plain"


def _read_back(message: OutgoingEmail, raw: bytes) -> str | None:
    # UTF-8 headers (a non-ASCII address, RFC 6532) are read as UTF-8, as a server does.
    # The header block is split as every parser splits it (compat32 keeps values raw);
    # each value is then decoded once.
    # ``raw`` is the header block: a parser's headers end at its empty line whatever
    # follows, so the parts need not be built to check them.
    block = raw.decode("utf-8")
    simple = _simple_fields(block)
    if simple is not None:  # raw values are what a reader sees: nothing to decode
        headers = simple
        content_type = _content_type(_first(simple, "content-type"))
        to = str(_first(simple, "to"))
    else:
        parsed = _RAW_HEADER_PARSER.parsestr(block, headersonly=True)
        headers = [(name, _decoded(value)) for name, value in parsed.items()]
        content_type = parsed.get_content_type()
        to = str(parsed["To"])
    found = sorted(name.lower() for name, _ in headers)
    if found != _expected_headers(message):
        extra = sorted(set(found) - set(_expected_headers(message)))
        return f"the built email has unexpected headers {extra or found}"
    if content_type != "multipart/alternative":
        return f"the built email is {content_type}, not multipart/alternative"
    for name, value in headers:
        if "\r" in value or "\n" in value:
            return f"the built email's {name} header holds a line break"
    decoded = {name.lower(): value for name, value in headers}
    if decoded["subject"] != one_line(message.subject):
        return "the built email's subject differs from the one rendered"
    if _addressee(to) != message.to_email:
        return f"the built email's To header does not name {message.to_email!r} alone"
    return None


_ATOM = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"  # RFC 5322 atext, without "=" and "?"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOT_ATOM_ADDRESS = rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*"
# ``address`` or ``Plain Words <address>``: ASCII atoms only (no "=?" can start an
# encoded word), which every RFC 5322 parser reads as that one address.
_PLAIN_TO = re.compile(rf"(?:{_ATOM}(?: {_ATOM})* <({_DOT_ATOM_ADDRESS})>|({_DOT_ATOM_ADDRESS}))")


def _addressee(value: str) -> str | None:
    """The one address a To header value names as a modern parser reads it (it decodes
    words even inside one, and refuses what decodes to a line break); ``None`` unless
    exactly one. A plain value (``_PLAIN_TO``) is read without the parser:
    ``test_mime_bytes`` proves both readings agree."""
    plain = _PLAIN_TO.fullmatch(value)
    if plain is not None:
        return plain.group(1) or plain.group(2)
    to = _READ_POLICY.header_fetch_parse("To", value).addresses
    if len(to) != 1:
        return None
    return f"{to[0].username}@{to[0].domain}"


# ---- the fast path: the bytes written out directly ----------------------------------------

_CRLF = "\r\n"
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
MAX_LINE = 998  # RFC 5322: no line longer (CRLF excluded)


@dataclass(frozen=True)
class BuiltMessage:
    data: bytes
    message_id: str  # without angle brackets


def _unstructured(name: str, value: str, utf8: bool) -> str:
    """``Name: value``; non-ASCII as RFC 2047 encoded words (folded, each <= 75
    characters) unless ``utf8`` (SMTPUTF8: headers travel as UTF-8)."""
    if value.isascii() or utf8:
        line = f"{name}: {value}"
        return line if len(line.encode()) <= MAX_LINE else _folded(name, value)
    return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep=_CRLF)


def _folded(name: str, value: str) -> str:
    return f"{name}: " + Header(value, "utf-8", header_name=name).encode(
        linesep=_CRLF, maxlinelen=MAX_LINE
    )


def _mailbox(name: str, address: str, utf8: bool) -> str:
    """``name <address>`` as one header value (``address`` alone without a name)."""
    if not name:
        return address
    if name.isascii() or utf8:
        if _SPECIALS.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{address}>"
    return Header(name, "utf-8").encode(linesep=_CRLF) + f" <{address}>"


def _part(kind: str, text: str, eight_bit: bool) -> tuple[str, bytes]:
    """One part's headers and body (CRLF line ends, a final line end, like set_content)."""
    # bytes.splitlines: only CR, LF and CRLF end a line (as in ``set_content``), not the
    # form feeds and separators ``str.splitlines`` also splits on.
    raw = b"\r\n".join(text.encode("utf-8").splitlines()) + b"\r\n"
    short = max(map(len, raw.split(b"\r\n"))) <= MAX_LINE
    if short and raw.isascii():
        cte = "7bit"
    elif short and eight_bit:
        cte = "8bit"
    else:
        cte = "base64"
        raw = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    head = f'Content-Type: text/{kind}; charset="utf-8"{_CRLF}Content-Transfer-Encoding: {cte}'
    return head, raw


def _boundary(texts: tuple[str, ...]) -> str:
    while True:
        boundary = f"==============={random.randrange(sys.maxsize):019d}=="
        if not any(f"--{boundary}" in text for text in texts):
            return boundary


def build_bytes(
    message: OutgoingEmail, *, utf8: bool = False, eight_bit: bool = True
) -> BuiltMessage:
    """The RFC 5322 bytes of ``message`` (CRLF line ends), written out directly.

    Carries what ``build_mime`` carries, at a fraction of the cost (``test_mime_bytes``
    proves both read back alike for every shipped email and generated values):
    multipart/alternative, plain text first; header values through ``one_line``; names
    and subjects outside ASCII as RFC 2047 words (raw UTF-8 when ``utf8``, for SMTPUTF8);
    ASCII parts 7bit, UTF-8 parts 8bit (base64 when ``eight_bit`` is False or a line
    would pass 998 bytes); no header line longer than 998.
    """
    boundary = _boundary((message.text, message.html))
    block, message_id = _header_block(message, utf8, boundary)
    out = [block.encode("utf-8")]
    for kind, text in (("plain", message.text), ("html", message.html)):
        head, body = _part(kind, text, eight_bit)
        out.append(f"--{boundary}{_CRLF}{head}{_CRLF}{_CRLF}".encode())
        out.append(body)
        out.append(_CRLF.encode())
    out.append(f"--{boundary}--{_CRLF}".encode())
    return BuiltMessage(b"".join(out), message_id.strip("<>"))


def _header_block(message: OutgoingEmail, utf8: bool, boundary: str) -> tuple[str, str]:
    """The header lines and the empty line after them; and the Message-ID."""
    from_name = one_line(message.from_name or "")
    to_name = one_line(message.to_name or "")
    lines = [
        _unstructured("Subject", one_line(message.subject), utf8),
        "From: " + _mailbox(from_name, message.from_email, utf8),
        "To: " + _mailbox(to_name, message.to_email, utf8),
    ]
    if message.reply_to:
        lines.append(f"Reply-To: {message.reply_to}")
    if message.date is not None:
        lines.append(f"Date: {format_datetime(message.date)}")
    domain = message.from_email.rpartition("@")[2] or "localhost"
    message_id = (
        f"<{message.message_id.strip('<>')}>" if message.message_id else make_msgid(domain=domain)
    )
    lines.append(f"Message-ID: {message_id}")
    lines.append(f"{DELIVERY_HEADER}: {message.delivery_id}")
    for name, value in message.headers.items():
        lines.append(_unstructured(name, value, utf8))
    lines.append("MIME-Version: 1.0")
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    return _CRLF.join(lines) + _CRLF + _CRLF, message_id
