"""The HTTP edge of outgoing webhooks: one keep-alive ``httpx`` client, a bounded time-out,
requests pinned to the address the private-address rule checked.

Redirects are not followed (a 3xx is a failed attempt). The receiver's answer is read up
to 64 KiB and dropped; only its status code is kept.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import httpx

from newsletter import __version__
from newsletter.errors import WebhookURLError
from newsletter.webhooks.resolver import checked_address
from newsletter.webhooks.signing import HEADER
from newsletter.webhooks.targets import Target, literal_address, parse_target

MAX_ANSWER_BYTES = 64 * 1024
# Headers and body leave at once: without it Nagle's algorithm and the receiver's delayed
# ACK add ~40 ms to every small request.
NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


@dataclass(frozen=True)
class Pinned:
    """Where a batch of requests goes: the URL with the checked address in place of the
    host, the original ``Host`` header, and the TLS server name."""

    target: Target
    url: httpx.URL
    host_header: str
    sni_hostname: str | None


@dataclass(frozen=True)
class PostResult:
    ok: bool
    status_code: int | None = None
    error: str | None = None


class WebhookSender:
    """Posts signed bodies; safe to share between threads (one connection pool)."""

    def __init__(
        self,
        *,
        timeout: float,
        allow_private: bool,
        connections: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            limits=httpx.Limits(
                max_connections=connections * 2, max_keepalive_connections=connections * 2
            ),
            headers={"User-Agent": f"newsletter-webhooks/{__version__}"},
            transport=transport or httpx.HTTPTransport(socket_options=NO_DELAY),
        )

    def pin(self, url: str) -> Pinned:
        """Resolve and check the URL's host now. Raises ``WebhookURLError``."""
        target = parse_target(url)
        address = checked_address(target, allow_private=self.allow_private)
        parsed = httpx.URL(url)
        default = 443 if target.scheme == "https" else 80
        host = f"[{target.host}]" if ":" in target.host else target.host
        host_header = host if target.port == default else f"{host}:{target.port}"
        is_name = literal_address(target.host) is None
        return Pinned(
            target=target,
            url=parsed.copy_with(host=str(address)),
            host_header=host_header,
            sni_hostname=target.host if is_name and target.scheme == "https" else None,
        )

    def post(self, pinned: Pinned, body: bytes, signature: str) -> PostResult:
        """One attempt; 2xx is success, anything else (or a time-out) is a failure."""
        headers = {
            "Host": pinned.host_header,
            "Content-Type": "application/json",
            HEADER: signature,
        }
        extensions = {"sni_hostname": pinned.sni_hostname} if pinned.sni_hostname else None
        started = time.monotonic()
        try:
            request = self.client.build_request(
                "POST", pinned.url, content=body, headers=headers, extensions=extensions
            )
            response = self.client.send(request, stream=True)
            try:
                self._drain(response, started)
            finally:
                response.close()
        except httpx.TimeoutException:
            return PostResult(False, error=f"timed out after {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return PostResult(False, error=f"{type(exc).__name__}: {exc}"[:500])
        code = response.status_code
        if 200 <= code < 300:
            return PostResult(True, status_code=code)
        return PostResult(False, status_code=code, error=f"HTTP {code}")

    def _drain(self, response: httpx.Response, started: float) -> None:
        read = 0
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > MAX_ANSWER_BYTES:
                return
            if time.monotonic() - started > self.timeout:
                raise httpx.ReadTimeout("the answer took longer than the time-out")

    def close(self) -> None:
        self.client.close()


def pin_or_error(sender: WebhookSender, url: str) -> Pinned | str:
    """The pinned target, or why the URL may not be used now (a failed attempt)."""
    try:
        return sender.pin(url)
    except WebhookURLError as exc:
        return str(exc)
