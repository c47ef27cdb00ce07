"""Which URLs a webhook may point at (pure: no DNS here, see ``resolver``).

Only ``http`` and ``https`` URLs with a host and without credentials. By default an address
that is not public (loopback, link-local, private, shared, reserved, multicast,
unspecified; IPv4-mapped IPv6 is read as the IPv4 address) is refused, so a webhook cannot
reach internal services; ``NEWSLETTER_WEBHOOK_ALLOW_PRIVATE=true`` lifts that.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from newsletter.errors import WebhookURLError

MAX_URL_LENGTH = 2000
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A checked URL's parts: what is resolved and where the request goes."""

    url: str
    scheme: str
    host: str  # without brackets, lower-cased
    port: int


def parse_target(url: str) -> Target:
    """Check the URL's form. Raises ``WebhookURLError``."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookURLError(url[:80] + "...", f"longer than {MAX_URL_LENGTH} characters")
    if any(unicodedata.category(c)[0] in ("C", "Z") for c in url):
        # Cc (tab, DEL, C1 such as U+0085), Cf (U+200B, bidi overrides), unassigned,
        # and every space or separator: none belongs in a URL we will call.
        raise WebhookURLError(url, "contains white space or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookURLError(url, f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise WebhookURLError(url, "only http:// and https:// URLs are allowed")
    if not parts.hostname:
        raise WebhookURLError(url, "the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookURLError(
            url.split("@", 1)[-1],
            "credentials in the URL are not allowed; receivers check "
            "the Newsletter-Signature header instead",
        )
    if parts.fragment:
        raise WebhookURLError(url, "a URL fragment (#...) is never sent; remove it")
    default = 443 if scheme == "https" else 80
    return Target(url=url, scheme=scheme, host=parts.hostname.lower(), port=port or default)


def literal_address(host: str) -> IPAddress | None:
    """The host as an IP address when it is one, else None (a name to resolve)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_forbidden(address: IPAddress) -> bool:
    """True for any address that is not public (see the module docstring)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_multicast or not address.is_global


def forbidden_reason(host: str, addresses: list[IPAddress]) -> str | None:
    """Why these resolved addresses may not be used, or None. Every address counts: a
    name with one public and one private address is refused."""
    if not addresses:
        return f"{host} does not resolve to any address"
    bad = [str(a) for a in addresses if is_forbidden(a)]
    if bad:
        return (
            f"{host} resolves to a loopback, link-local or private address ({', '.join(bad)}); "
            "set NEWSLETTER_WEBHOOK_ALLOW_PRIVATE=true to allow internal receivers"
        )
    return None
