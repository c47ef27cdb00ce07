"""Resolving a webhook's host and applying the private-address rule (DNS: I/O).

Called when an endpoint is added and again before every batch of requests (so a name that
starts resolving to an internal address later - DNS rebinding - is refused then); the
request then goes to the very address that was checked, never to a fresh lookup.
"""

from __future__ import annotations

import socket

from newsletter.errors import WebhookURLError
from newsletter.webhooks.targets import (
    IPAddress,
    Target,
    forbidden_reason,
    literal_address,
)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (a literal address is itself)."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookURLError(host, f"cannot resolve the host ({exc})") from None
    found: list[IPAddress] = []
    for info in infos:
        address = literal_address(str(info[4][0]).split("%", 1)[0])
        if address is not None and address not in found:
            found.append(address)
    return found


def checked_address(target: Target, *, allow_private: bool) -> IPAddress:
    """The address to connect to: resolved now, every address checked unless private
    addresses are allowed. Raises ``WebhookURLError``."""
    addresses = resolve(target.host, target.port)
    reason = None if allow_private and addresses else forbidden_reason(target.host, addresses)
    if reason is not None:
        raise WebhookURLError(target.url, reason)
    return addresses[0]
