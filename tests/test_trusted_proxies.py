"""Behind a proxy: ``X-Forwarded-For`` counts only from ``NEWSLETTER_TRUSTED_PROXIES``."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.app import App
from newsletter.cli import main
from newsletter.client_ip import UVICORN_PROXY_HEADERS, client_ip, parse_networks
from newsletter.errors import ConfigurationError
from newsletter.models import ConsentEvent
from newsletter.settings import Settings
from newsletter.web.app import create_web_app
from tests.conftest import NOW
from tests.servers import free_port
from tests.test_web_subscribe import Clock

SPOOFED = "6.6.6.6"


@pytest.fixture
def make_site(
    make_settings: Callable[..., Settings],
) -> Iterator[Callable[..., tuple[TestClient, App]]]:
    apps: list[App] = []

    def make(peer: str, **overrides: str) -> tuple[TestClient, App]:
        app = App(make_settings(**overrides))
        apps.append(app)
        web = create_web_app(app, clock=Clock(NOW))
        return TestClient(web, client=(peer, 40000)), app

    yield make
    for app in apps:
        app.close()


def recorded_ips(app: App) -> list[str | None]:
    with app.sessions() as session:
        return list(session.scalars(select(ConsentEvent.ip).order_by(ConsentEvent.id)))


def subscribe(client: TestClient, email: str, forwarded: str | None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return client.post("/subscribe", json={"email": email}, headers=headers)


def test_spoofed_header_from_an_untrusted_peer_does_not_change_the_recorded_ip(
    make_site: Callable[..., tuple[TestClient, App]],
) -> None:
    """Default settings trust no proxy: loopback included, the header is ignored."""
    client, app = make_site("127.0.0.1")
    for n in range(3):
        assert (
            subscribe(client, f"spoof{n}@example.org", f"{SPOOFED}, 10.0.0.{n}").status_code == 202
        )
    assert recorded_ips(app) == ["127.0.0.1"] * 3


def test_spoofed_header_does_not_escape_the_rate_limit(
    make_site: Callable[..., tuple[TestClient, App]],
) -> None:
    client, _ = make_site("203.0.113.9", subscribe_rate_limit="2/minute")
    answers = [
        subscribe(client, f"rl{n}@example.org", f"198.51.100.{n}").status_code for n in range(3)
    ]
    assert answers == [202, 202, 429]


def test_from_a_trusted_proxy_the_right_most_untrusted_address_is_used(
    make_site: Callable[..., tuple[TestClient, App]],
) -> None:
    client, app = make_site("10.0.0.2", trusted_proxies="10.0.0.0/8, 192.0.2.7")
    # The client forged the first entry; our proxies appended the rest.
    forwarded = f"{SPOOFED}, 203.0.113.50, 192.0.2.7, 10.9.9.9"
    assert subscribe(client, "proxied@example.org", forwarded).status_code == 202
    assert recorded_ips(app) == ["203.0.113.50"]


def test_a_trusted_proxy_with_rate_limit_counts_the_real_client(
    make_site: Callable[..., tuple[TestClient, App]],
) -> None:
    client, _ = make_site("10.0.0.2", trusted_proxies="10.0.0.0/8", subscribe_rate_limit="1/minute")
    assert subscribe(client, "a@example.org", "203.0.113.1").status_code == 202
    assert subscribe(client, "b@example.org", "203.0.113.2").status_code == 202  # another client
    assert subscribe(client, "c@example.org", "203.0.113.1").status_code == 429


def test_confirm_records_the_client_behind_a_trusted_proxy(
    make_site: Callable[..., tuple[TestClient, App]],
) -> None:
    from tests.mailbox import link, read_outbox, token_of

    client, app = make_site("10.0.0.2", trusted_proxies="10.0.0.2")
    assert subscribe(client, "confirm@example.org", "203.0.113.77").status_code == 202
    [message] = read_outbox(app.settings.effective_outbox_dir)
    token = token_of(link(message, "/confirm/"))
    answer = client.post(f"/confirm/{token}", headers={"X-Forwarded-For": "198.51.100.5"})
    assert answer.status_code == 200
    assert recorded_ips(app) == ["203.0.113.77", "198.51.100.5"]


@pytest.mark.parametrize(
    "value",
    ["10.0.0.0/33", "not-an-ip", "10.0.0.1,,nope", "300.1.1.1"],
)
def test_a_bad_trusted_proxies_setting_stops_start_up_naming_the_variable(
    make_settings: Callable[..., Settings], value: str
) -> None:
    with pytest.raises(ConfigurationError, match="NEWSLETTER_TRUSTED_PROXIES"):
        make_settings(trusted_proxies=value)


def test_serve_runs_uvicorn_without_its_own_proxy_header_rewriting(
    monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str]
) -> None:
    """uvicorn trusts ``X-Forwarded-For`` from 127.0.0.1 by default; ``serve`` turns that off
    so only ``NEWSLETTER_TRUSTED_PROXIES`` decides."""
    from tests.servers import free_port

    seen: dict[str, Any] = {}

    def run(self: uvicorn.Server, sockets: Any = None) -> None:
        seen["proxy_headers"] = self.config.proxy_headers

    monkeypatch.setattr(uvicorn.Server, "run", run)
    port = str(free_port())
    result = CliRunner(env=cli_env).invoke(main, ["serve", "--no-scheduler", "--port", port])
    assert result.exit_code == 0, result.output
    assert seen["proxy_headers"] is False


def test_over_real_uvicorn_a_spoofed_header_from_loopback_is_ignored(
    make_settings: Callable[..., Settings],
) -> None:
    import threading
    import time

    app = App(make_settings())
    try:
        port = free_port()
        config = uvicorn.Config(
            create_web_app(app, clock=Clock(NOW)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            proxy_headers=UVICORN_PROXY_HEADERS,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            for n in range(3):
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/subscribe",
                    json={"email": f"real{n}@example.org"},
                    headers={"X-Forwarded-For": f"6.6.6.{n}"},
                )
                assert answer.status_code == 202
        finally:
            server.should_exit = True
            thread.join(timeout=10)
        assert recorded_ips(app) == ["127.0.0.1"] * 3
    finally:
        app.close()


# ---- the pure part --------------------------------------------------------------------------

TRUSTED = parse_networks("10.0.0.0/8, 192.0.2.7, ::1, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        pytest.param("203.0.113.1", ["6.6.6.6"], "203.0.113.1", id="untrusted-peer"),
        pytest.param(None, ["6.6.6.6"], "unknown", id="no-peer"),
        pytest.param("10.0.0.1", [], "10.0.0.1", id="trusted-no-header"),
        pytest.param("10.0.0.1", ["203.0.113.5"], "203.0.113.5", id="one-hop"),
        pytest.param("10.0.0.1", ["1.1.1.1, 203.0.113.5"], "203.0.113.5", id="right-most"),
        pytest.param(
            "10.0.0.1", ["1.1.1.1, 203.0.113.5, 192.0.2.7"], "203.0.113.5", id="skips-trusted"
        ),
        pytest.param("10.0.0.1", ["1.1.1.1", "203.0.113.5"], "203.0.113.5", id="two-lines"),
        pytest.param("10.0.0.1", ["10.0.0.3, 10.0.0.4"], "10.0.0.3", id="all-trusted"),
        pytest.param("10.0.0.1", ["1.1.1.1, garbage"], "10.0.0.1", id="garbage-stops"),
        pytest.param(
            "10.0.0.1", ["garbage, 203.0.113.5, 10.0.0.9"], "203.0.113.5", id="garbage-left"
        ),
        pytest.param("10.0.0.1", ["10.0.0.5, x"], "10.0.0.1", id="garbage-after-trusted"),
        pytest.param("10.0.0.1", [" , 203.0.113.5 ,"], "203.0.113.5", id="empty-hops"),
        pytest.param("10.0.0.1", ["203.0.113.5:4711"], "203.0.113.5", id="v4-port"),
        pytest.param("10.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1", id="v6-port"),
        pytest.param("::1", ["2001:db8::2"], "2001:db8::2", id="v6-peer"),
        pytest.param("::ffff:10.0.0.1", ["203.0.113.5"], "203.0.113.5", id="v4-mapped-peer"),
        pytest.param("fd00::1", ["::ffff:10.1.1.1, 2001:db8::3"], "2001:db8::3", id="v6-chain"),
        pytest.param("testclient", ["203.0.113.5"], "testclient", id="peer-not-an-ip"),
        pytest.param("10.0.0.1", ["[2001:db8::1"], "10.0.0.1", id="v6-unclosed-bracket"),
        pytest.param("10.0.0.1", ["[2001:db8::1]"], "2001:db8::1", id="v6-brackets-no-port"),
    ],
)
def test_client_ip(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert client_ip(peer, forwarded, TRUSTED) == expected


def test_client_ip_without_trusted_proxies_is_the_peer() -> None:
    assert client_ip("127.0.0.1", ["203.0.113.5"], ()) == "127.0.0.1"


def test_parse_networks() -> None:
    assert parse_networks("") == ()
    assert parse_networks(" 10.1.2.3/8 ,::1") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    with pytest.raises(ValueError, match="'nope' is not an IP address or CIDR range"):
        parse_networks("10.0.0.0/8,nope")
    # a long bad entry is shown cut to 64 characters
    with pytest.raises(ValueError, match=r"^'x{64}' is not an IP address or CIDR range"):
        parse_networks("x" * 100)


def test_uvicorn_is_told_not_to_read_the_header_itself() -> None:
    # uvicorn would trust X-Forwarded-For from 127.0.0.1; only our own reading may count
    assert UVICORN_PROXY_HEADERS is False
