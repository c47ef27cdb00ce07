"""VERP return paths (pure): ``bounces+<delivery id>@domain`` from ``bounces@domain``.

A bounce is sent to the envelope sender, so the address it comes back to names the email
that bounced, whatever the remote server quotes (or fails to quote) of it.
"""

from __future__ import annotations

import re

_VERP = re.compile(r"([^@\s+<>]+)\+([0-9]{1,19})@([^@\s<>]+)")


def verp_address(bounce_address: str, delivery_id: int) -> str:
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{delivery_id}@{domain}"


def read_verp(address: str, bounce_address: str) -> int | None:
    """The delivery id in a VERP ``address`` made from ``bounce_address``, else None."""
    match = _VERP.search(address)
    if match is None:
        return None
    local, _, domain = bounce_address.rpartition("@")
    if match.group(1).lower() != local.lower() or match.group(3).lower() != domain.lower():
        return None
    number = int(match.group(2))
    return number if 0 < number < 2**63 else None
