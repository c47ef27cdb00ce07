"""Machine or human? One open or click, classified with a recorded reason (pure).

No I/O, no clock: everything the decision needs is in ``Hit``. Rules, first match wins:

=====================  ==================================================================
reason                 when
=====================  ==================================================================
``trap link``          the hidden link only machines follow (never shown to people)
``sendgrid machine``   SendGrid says so (``sg_machine_open``: Apple Mail Privacy Protection)
``head request``       a HEAD request: link checkers, never a person's browser
``no user agent``      an empty or missing User-Agent
``scanner ua``         a known scanner, proxy checker or HTTP library in the User-Agent
``apple mpp ua``       the bare ``Mozilla/5.0`` Apple's privacy proxy sends for opens
``apple mpp ip``       an open from Apple's proxy address range (17.0.0.0/8)
``too soon``           within ``TOO_SOON`` seconds of the email being sent
``burst``              another link of the same email was "clicked" within ``BURST`` seconds
``human``              none of the above
=====================  ==================================================================
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

TOO_SOON = timedelta(seconds=10)
BURST = timedelta(seconds=1)
# Apple's own network; Mail Privacy Protection fetches remote content through it.
APPLE_RANGES = (ipaddress.ip_network("17.0.0.0/8"),)
APPLE_PROXY_AGENT = "mozilla/5.0"
SCANNER_AGENTS = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "safelinks",
    "symantec",
    "trendmicro",
    "forcepoint",
    "fortiguard",
    "sophos",
    "zscaler",
    "bingpreview",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww-perl",
    "scanner",
    "crawler",
    "spider",
    "bot/",
    "bot;",
    "slurp",
)


class Kind(enum.StrEnum):
    OPEN = "open"
    CLICK = "click"


@dataclass(frozen=True)
class Hit:
    """One open or click as observed. ``other_clicks`` are the times of earlier clicks on
    *other* links of the same email."""

    kind: Kind
    at: datetime
    sent_at: datetime | None
    method: str = "GET"
    user_agent: str | None = None
    ip: str | None = None
    trap: bool = False
    provider_machine: bool = False
    other_clicks: Sequence[datetime] = field(default_factory=tuple)


@dataclass(frozen=True)
class Verdict:
    human: bool
    reason: str


def classify(hit: Hit) -> Verdict:
    """The verdict for one hit; the first rule that matches gives the reason."""
    agent = (hit.user_agent or "").strip().lower()
    if hit.trap:
        return Verdict(False, "trap link")
    if hit.provider_machine:
        return Verdict(False, "sendgrid machine")
    if hit.method.upper() == "HEAD":
        return Verdict(False, "head request")
    if hit.user_agent is not None and not agent:
        return Verdict(False, "no user agent")
    if any(marker in agent for marker in SCANNER_AGENTS):
        return Verdict(False, "scanner ua")
    if hit.kind is Kind.OPEN and agent == APPLE_PROXY_AGENT:
        return Verdict(False, "apple mpp ua")
    if hit.kind is Kind.OPEN and in_apple_range(hit.ip):
        return Verdict(False, "apple mpp ip")
    if hit.sent_at is not None and hit.at - hit.sent_at < TOO_SOON:
        return Verdict(False, "too soon")
    if hit.kind is Kind.CLICK and any(abs(hit.at - other) <= BURST for other in hit.other_clicks):
        return Verdict(False, "burst")
    return Verdict(True, "human")


def in_apple_range(ip: str | None) -> bool:
    """True for an address inside Apple's proxy ranges; False for anything unparseable."""
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in APPLE_RANGES)
