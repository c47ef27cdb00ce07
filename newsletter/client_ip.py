"""Which address a request came from, behind the proxies the operator trusts (pure).

``X-Forwarded-For`` is written by whoever sends the request, so it counts only when the
direct peer is one of ``NEWSLETTER_TRUSTED_PROXIES`` (empty by default: the header is
ignored). Then the chain is read from the right, skipping trusted proxies; the first
address that is not trusted is the client. A hop that is not an IP address stops the
walk, and the last trusted hop is used: a forged value is never recorded.

The ASGI server must not rewrite the peer itself: ``newsletter serve`` runs uvicorn with
``proxy_headers=UVICORN_PROXY_HEADERS`` (uvicorn would otherwise trust the header from 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# uvicorn.run(..., proxy_headers=UVICORN_PROXY_HEADERS): we read the header ourselves
UVICORN_PROXY_HEADERS = False


def parse_networks(value: str) -> tuple[Network, ...]:
    """Comma-separated IPs or CIDRs; ``ValueError`` naming the bad entry."""
    networks: list[Network] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry[:64]!r} is not an IP address or CIDR range (e.g. 10.0.0.0/8,192.0.2.7,::1)"
            ) from None
    return tuple(networks)


def _address(value: str) -> Address | None:
    text = value.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, nets: Iterable[Network]) -> bool:
    return any(address.version == net.version and address in net for net in nets)


def client_ip(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address: the peer, or from ``X-Forwarded-For`` (every header line,
    in order) when the peer is a trusted proxy."""
    if peer is None:
        return "unknown"
    peer_address = _address(peer)
    if not trusted or peer_address is None or not _trusted(peer_address, trusted):
        return peer
    hops = [hop for line in forwarded_for for hop in line.split(",") if hop.strip()]
    client = str(peer_address)
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return client  # garbage in the chain: keep the last address we can vouch for
        client = str(address)
        if not _trusted(address, trusted):
            return client
    return client
