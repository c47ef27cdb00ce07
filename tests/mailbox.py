"""Read what the outbox backend wrote (tests only)."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path


def read_outbox(directory: Path) -> list[EmailMessage]:
    if not directory.exists():
        return []
    messages = []
    for path in sorted(directory.glob("*.eml")):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        messages.append(parsed)
    return messages


def text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def link(message: EmailMessage, path: str) -> str:
    """The first https link in the text part whose path starts with ``path``."""
    found = re.search(
        rf"https?://[^\s<>\"')\]]+{re.escape(path)}[^\s<>\"')\]]+", text_part(message)
    )
    assert found, f"no {path} link in:\n{text_part(message)}"
    return found.group(0)


def token_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]
