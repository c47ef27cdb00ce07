"""Group emails that differ only in per-recipient values (pure: no I/O, no SDK).

SendGrid can send one content to up to 1,000 recipients in one request, each recipient
with its own ``substitutions`` (applied to subject and content), ``headers`` and
``custom_args``. ``group_messages`` finds which rendered emails can share a request:

1. For each email, every value in ``OutgoingEmail.personal`` is replaced in subject and
   text by a tag such as ``%%nl:first_name%%``, and in html its escaped form by
   ``%%nl:first_name:h%%`` (the raw form by the plain tag), longest value first.
   That gives the email's *skeleton*.
2. The email is kept for batching only if substituting its own values back into the
   skeleton reproduces its subject, html and text exactly (``apply_substitutions``);
   otherwise (``%%`` in the content, ``%`` in a value, an odd key, too large
   substitutions) it
   goes out alone, unchanged.
3. Emails with equal skeletons and equal sender, reply-to and categories form one group
   of at most ``max_recipients``. Since every member's own values turn the shared
   skeleton back into exactly its own email, the batched request delivers per recipient
   the same subject, html and text as sending that email alone.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from newsletter.delivery.base import OutgoingEmail, Skeleton

TAG_MARKER = "%%nl:"
MAX_RECIPIENTS = 1000
# SendGrid: substitutions and custom_args each at most 10,000 bytes per personalization.
MAX_SUBSTITUTION_BYTES = 10_000
MIN_VALUE_LENGTH = 2  # a one-letter value would turn every such letter into a tag

_KEY = re.compile(r"[A-Za-z0-9_]{1,64}\Z")
# ``:h``: the value HTML-escaped; ``:hh``: escaped twice (a subject holding the name,
# printed escaped in the html: only a batch render plan makes that tag).
TAG_PATTERN = r"%%nl:[A-Za-z0-9_]{1,64}(?::hh?)?%%"
_TAG = re.compile(TAG_PATTERN)


def tag_for(key: str, variant: str = "") -> str:
    """The substitution tag for ``key`` (``variant`` names an escaped form)."""
    suffix = f":{variant}" if variant else ""
    return f"{TAG_MARKER}{key}{suffix}%%"


@dataclass(frozen=True)
class Recipient:
    """One email of a group: its position in the input and its substitution values."""

    index: int
    message: OutgoingEmail
    substitutions: tuple[tuple[str, str], ...]  # (tag, value), sorted by tag


@dataclass(frozen=True)
class MailGroup:
    """Emails that go out as one request: shared content, one entry per recipient.

    For a single email sent alone ``subject``/``html``/``text`` are its own and
    ``substitutions`` of its recipient are empty.
    """

    subject: str
    html: str
    text: str
    recipients: tuple[Recipient, ...]

    @property
    def first(self) -> OutgoingEmail:
        return self.recipients[0].message

    @property
    def batched(self) -> bool:
        return any(r.substitutions for r in self.recipients)


def apply_substitutions(template: str, substitutions: Mapping[str, str]) -> str:
    """Replace every known tag in ``template`` by its value, in one pass (as SendGrid does)."""
    if not substitutions or TAG_MARKER not in template:
        return template
    return _TAG.sub(lambda m: substitutions.get(m.group(0), m.group(0)), template)


def _jinja_escape(value: str) -> str:
    """The escaping of Jinja2/MarkupSafe autoescape (``'`` -> ``&#39;``, ``"`` -> ``&#34;``)."""
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


def _escaped_form(value: str, html: str) -> str:
    """The HTML-escaped form of ``value`` this email's html uses (Jinja's by default)."""
    jinja = _jinja_escape(value)
    if jinja not in html:
        stdlib = html_lib.escape(value)
        if stdlib in html:
            return stdlib
    return jinja


def _candidates(message: OutgoingEmail) -> tuple[dict[str, str], dict[str, str]] | None:
    """Map each text to replace to its tag, for subject/text and for html.

    In html the escaped form of a value gets the ``:h`` tag even when escaping changes
    nothing, so "Anna" and "O'Brien" give the same skeleton. ``None`` when a key or
    value is unusable.
    """
    plain: dict[str, str] = {}
    markup: dict[str, str] = {}
    for key in sorted(message.personal):
        value = message.personal[key]
        if not _KEY.match(key) or "%" in value:
            return None
        if len(value) < MIN_VALUE_LENGTH:
            continue
        plain.setdefault(value, tag_for(key))
        markup.setdefault(_escaped_form(value, message.html), tag_for(key, "h"))
        markup.setdefault(value, tag_for(key))
    return plain, markup


def _replace_all(text: str, candidates: Mapping[str, str]) -> str:
    """Replace each candidate by its tag, longest first.

    Plain ``str.replace`` (no per-email regex to compile): a value that happens to occur
    inside a tag put there before would corrupt the skeleton, but then the round-trip
    proof in ``make_skeleton`` fails and the email simply goes out alone.
    """
    for value in sorted(candidates, key=lambda c: (-len(c), c)):
        text = text.replace(value, candidates[value])
    return text


def make_skeleton(message: OutgoingEmail) -> Skeleton | None:
    """The email with its per-recipient values replaced by tags, or ``None``.

    ``None`` means the email cannot be batched safely and must go out alone.
    """
    parts = (message.subject, message.html, message.text)
    # No "%%" in the content and no "%" in values: then every tag in a skeleton is one we
    # put there, and replacing tags one at a time (SendGrid) equals our single pass.
    if not message.personal or any("%%" in part for part in parts):
        return None
    found = _candidates(message)
    if found is None:
        return None
    plain, markup = found
    subject = _replace_all(message.subject, plain)
    html = _replace_all(message.html, markup)
    text = _replace_all(message.text, plain)
    used = {m.group(0) for p in (subject, html, text) for m in _TAG.finditer(p)}
    if not used:
        return None
    values = {tag: form for form, tag in (*plain.items(), *markup.items()) if tag in used}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
    if size > MAX_SUBSTITUTION_BYTES:
        return None
    # The proof: this email's own values turn the skeleton back into exactly this email.
    restored = tuple(apply_substitutions(p, values) for p in (subject, html, text))
    if restored != parts:
        return None
    return Skeleton(subject, html, text, tuple(sorted(values.items())))


def _provided(message: OutgoingEmail) -> Skeleton | None:
    """The skeleton ``message`` came with, if it keeps ``make_skeleton``'s rules."""
    skeleton = message.skeleton
    if skeleton is None or not skeleton.substitutions:
        return None
    size = 0
    for tag, value in skeleton.substitutions:
        if "%" in value or not _TAG.fullmatch(tag):
            return None
        size += len(tag.encode()) + len(value.encode())
    if size > MAX_SUBSTITUTION_BYTES:
        return None
    return skeleton


def _alone(index: int, message: OutgoingEmail) -> MailGroup:
    recipient = Recipient(index, message, ())
    return MailGroup(message.subject, message.html, message.text, (recipient,))


def _envelope(message: OutgoingEmail) -> tuple[object, ...]:
    return (message.from_email, message.from_name, message.reply_to, message.categories)


def singles(messages: Iterable[OutgoingEmail]) -> list[MailGroup]:
    """One group per email, no substitutions (one request per email)."""
    return [_alone(i, m) for i, m in enumerate(messages)]


def group_messages(
    messages: Sequence[OutgoingEmail], *, max_recipients: int = MAX_RECIPIENTS
) -> list[MailGroup]:
    """Group ``messages`` into requests, in order of each group's first email.

    Every email appears in exactly one group; a group never holds more than
    ``max_recipients`` emails.
    """
    if not 1 <= max_recipients <= MAX_RECIPIENTS:
        raise ValueError(f"max_recipients must be 1..{MAX_RECIPIENTS}, got {max_recipients}")
    order: list[tuple[object, ...] | int] = []
    members: dict[tuple[object, ...], list[Recipient]] = {}
    skeletons: dict[tuple[object, ...], Skeleton] = {}
    alone: dict[int, MailGroup] = {}
    for index, message in enumerate(messages):
        skeleton = _provided(message) or make_skeleton(message)
        if skeleton is None:
            order.append(index)
            alone[index] = _alone(index, message)
            continue
        key = (skeleton.subject, skeleton.html, skeleton.text, *_envelope(message))
        if key not in members:
            order.append(key)
            members[key] = []
            skeletons[key] = skeleton
        members[key].append(Recipient(index, message, skeleton.substitutions))
    groups: list[MailGroup] = []
    for entry in order:
        if isinstance(entry, int):
            groups.append(alone[entry])
            continue
        recipients = members[entry]
        if len(recipients) == 1:
            groups.append(_alone(recipients[0].index, recipients[0].message))
            continue
        skeleton = skeletons[entry]
        for start in range(0, len(recipients), max_recipients):
            chunk = tuple(recipients[start : start + max_recipients])
            groups.append(MailGroup(skeleton.subject, skeleton.html, skeleton.text, chunk))
    return groups
