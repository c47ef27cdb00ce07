"""Our own open and click tracking over HTTP: links rewritten at render time, a human-like
click redirects (302) to the email's original URL and counts, machines are recognised and
recorded with their reason, a tampered token is 404 and redirects nowhere. Fuzzed."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from newsletter.app import App
from newsletter.db import transaction
from newsletter.dispatch import deliver_due
from newsletter.models import EngagementEvent
from newsletter.settings import Settings
from newsletter.stats import all_sequence_stats
from newsletter.tracking.tokens import make_click_token, make_open_token
from newsletter.web.app import create_web_app
from tests.conftest import NOW, ROOT
from tests.factories import add_subscriber, queue_deliveries
from tests.mailbox import html_part, read_outbox, text_part
from tests.test_web_subscribe import Clock

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)
ITEM = """---
subject: Two links
preheader: And one of them twice.
---
Read [the guide](https://shop.example/guide?a=1&b=2), then [the shop](https://shop.example/),
and [the guide again](https://shop.example/guide?a=1&b=2).
"""
GUIDE = "https://shop.example/guide?a=1&b=2"
SHOP = "https://shop.example/"


@dataclass
class Sent:
    client: TestClient
    app: App
    clock: Clock
    delivery_id: int
    html: str
    text: str

    def clicks(self) -> list[str]:
        return re.findall(r'href="(https://news\.example/t/c/[^"]+)"', self.html)

    def pixel(self) -> str:
        found = re.search(r'src="(https://news\.example/t/o/[^"]+)"', self.html)
        assert found
        return found.group(1)

    def path(self, url: str) -> str:
        return url.removeprefix("https://news.example")

    def events(self) -> list[tuple[str, bool, str, int | None]]:
        with self.app.sessions() as session:
            rows = session.scalars(select(EngagementEvent).order_by(EngagementEvent.id))
            return [(e.kind, e.human, e.reason, e.link_index) for e in rows]


def content_with_links(tmp_path: Path) -> Path:
    target = tmp_path / "content"
    shutil.copytree(ROOT / "content", target)
    (target / "tips" / "two-links.md").write_text(ITEM)
    return target


@pytest.fixture
def sent(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[Sent]:
    app = App(
        make_settings(
            track_opens="true", track_clicks="true", content_dir=str(content_with_links(tmp_path))
        )
    )
    with transaction(app.sessions) as session:
        subscriber = add_subscriber(session, "kim@example.org")
        [delivery_id] = queue_deliveries(session, [subscriber.id], item_id="tips/two-links")
    deliver_due(app, now=NOW, worker="w")
    [message] = read_outbox(app.settings.effective_outbox_dir)
    clock = Clock(NOW + timedelta(hours=1))
    client = TestClient(create_web_app(app, clock=clock), follow_redirects=False)
    yield Sent(client, app, clock, delivery_id, html_part(message), text_part(message))
    app.close()


def test_links_are_rewritten_once_each_with_a_pixel_and_a_hidden_trap(sent: Sent) -> None:
    links = sent.clicks()
    assert len(links) == 4  # trap, guide, shop, guide again (same index)
    assert links[1] == links[3]
    assert GUIDE.replace("&", "&amp;") not in sent.html
    assert 'style="display:none' in sent.html
    assert 'aria-hidden="true"' in sent.html
    assert "/unsubscribe/" in sent.html  # the unsubscribe link is never rewritten
    assert GUIDE in sent.text
    assert "/t/c/" not in sent.text
    assert sent.pixel()


def test_a_human_click_redirects_to_the_original_url_and_counts(sent: Sent) -> None:
    _, guide, shop, _ = sent.clicks()
    answer = sent.client.get(sent.path(guide), headers={"user-agent": CHROME})
    assert answer.status_code == 302
    assert answer.headers["location"] == GUIDE
    sent.clock.now += timedelta(seconds=30)
    assert sent.client.get(sent.path(shop), headers={"user-agent": CHROME}).headers["location"] == (
        SHOP
    )
    assert sent.events() == [("click", True, "human", 0), ("click", True, "human", 1)]


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        pytest.param("soon", "too soon", id="2s-after-delivery"),
        pytest.param("head", "head request", id="head"),
        pytest.param("scanner", "scanner ua", id="scanner-ua"),
        pytest.param("no-ua", "no user agent", id="no-ua"),
    ],
)
def test_machine_clicks_are_recorded_as_machine_and_still_redirect(
    sent: Sent, how: str, reason: str
) -> None:
    _, guide, _, _ = sent.clicks()
    headers = {"user-agent": CHROME}
    if how == "soon":
        sent.clock.now = NOW + timedelta(seconds=2)
    if how == "scanner":
        headers = {"user-agent": "Mozilla/5.0 (compatible; Barracuda Sentinel link scanner)"}
    if how == "no-ua":
        headers = {"user-agent": ""}
    method = "HEAD" if how == "head" else "GET"
    answer = sent.client.request(method, sent.path(guide), headers=headers)
    assert answer.status_code == 302
    assert answer.headers["location"] == GUIDE
    assert sent.events() == [("click", False, reason, 0)]


def test_the_trap_link_is_a_machine_and_redirects_nowhere(sent: Sent) -> None:
    trap = sent.clicks()[0]
    answer = sent.client.get(sent.path(trap), headers={"user-agent": CHROME})
    assert answer.status_code == 200
    assert "location" not in answer.headers
    assert sent.events() == [("click", False, "trap link", -1)]


def test_two_links_clicked_within_a_second_are_both_machine(sent: Sent) -> None:
    _, guide, shop, _ = sent.clicks()
    sent.client.get(sent.path(guide), headers={"user-agent": CHROME})
    sent.clock.now += timedelta(milliseconds=400)
    sent.client.get(sent.path(shop), headers={"user-agent": CHROME})
    assert sent.events() == [("click", False, "burst", 0), ("click", False, "burst", 1)]


def test_opens_human_and_apple_mpp(sent: Sent) -> None:
    pixel = sent.path(sent.pixel())
    answer = sent.client.get(pixel, headers={"user-agent": "Mozilla/5.0"})  # Apple's proxy
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/gif"
    assert answer.headers["cache-control"].startswith("no-store")
    sent.clock.now += timedelta(minutes=5)
    sent.client.get(pixel, headers={"user-agent": CHROME})
    assert sent.events() == [("open", False, "apple mpp ua", None), ("open", True, "human", None)]


def test_stats_count_human_and_machine_opens_per_email(sent: Sent) -> None:
    pixel = sent.path(sent.pixel())
    for agent in ("Mozilla/5.0", CHROME, CHROME):
        sent.client.get(pixel, headers={"user-agent": agent})
        sent.clock.now += timedelta(minutes=1)
    sent.client.get(sent.path(sent.clicks()[0]), headers={"user-agent": CHROME})
    with sent.app.sessions() as session:
        rows = all_sequence_stats(session)
    [row] = rows
    assert (row["opens"], row["machine_opens"], row["clicks"], row["machine_clicks"]) == (
        1,
        1,
        0,
        1,
    )


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), id="last-char"),
        pytest.param(lambda t: "X" + t[1:], id="first-char"),
        pytest.param(lambda t: t + "x", id="appended"),
        pytest.param(lambda t: t.split(".")[0], id="no-signature"),
    ],
)
def test_a_tampered_token_is_404_and_redirects_nowhere(
    sent: Sent, mutate: Callable[[str], str]
) -> None:
    for url in (sent.clicks()[1], sent.pixel()):
        prefix, token = url.rsplit("/", 1)
        answer = sent.client.get(f"{sent.path(prefix)}/{mutate(token)}")
        assert answer.status_code == 404
        assert "location" not in answer.headers
    assert sent.events() == []


def test_a_genuine_token_for_an_unknown_link_or_email_is_404(sent: Sent) -> None:
    keys = sent.app.settings.secret_keys
    for path in (
        f"/t/c/{make_click_token(sent.delivery_id, 7, keys=keys)}",  # no such link
        f"/t/c/{make_click_token(999, 0, keys=keys)}",  # no such email
        f"/t/o/{make_open_token(999, keys=keys)}",
        f"/t/o/{make_click_token(sent.delivery_id, 0, keys=keys)}",  # a click token as open
    ):
        answer = sent.client.get(path)
        assert answer.status_code == 404, path
        assert "location" not in answer.headers
    assert sent.events() == []


def test_tracking_is_off_by_default(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    app = App(make_settings(content_dir=str(content_with_links(tmp_path))))
    try:
        with transaction(app.sessions) as session:
            subscriber = add_subscriber(session, "lee@example.org")
            queue_deliveries(session, [subscriber.id], item_id="tips/two-links")
        deliver_due(app, now=NOW, worker="w")
        [message] = read_outbox(app.settings.effective_outbox_dir)
    finally:
        app.close()
    html = html_part(message)
    assert "/t/c/" not in html
    assert "/t/o/" not in html
    assert GUIDE.replace("&", "&amp;") in html


@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["o", "c"]),
    token=st.one_of(
        st.text(min_size=1, max_size=300),
        st.from_regex(r"[A-Za-z0-9_.\-]{1,120}", fullmatch=True),
        st.builds(
            lambda d, i: make_click_token(d, i, keys=("test-secret-key-newest",)),
            st.integers(min_value=-(2**64), max_value=2**64),
            st.integers(min_value=-5, max_value=20),
        ),
    ),
    method=st.sampled_from(["GET", "HEAD"]),
    agent=st.text(max_size=200).filter(lambda a: "\n" not in a and "\r" not in a),
)
@example(kind="o", token="0/", method="GET", agent="")  # was a 307 to /t/o/0 (slash rule)
@example(kind="c", token="x/", method="HEAD", agent="")
@example(kind="o", token=".", method="GET", agent="")  # the client asks for /t/o: was a 307
@example(kind="c", token="..", method="HEAD", agent="")
def test_fuzz_tracking_routes_never_5xx_never_a_foreign_redirect(
    sent: Sent, kind: str, token: str, method: str, agent: str
) -> None:
    try:
        answer = sent.client.request(
            method, f"/t/{kind}/{quote(token, safe='')}", headers={"user-agent": agent}
        )
    except UnicodeEncodeError:  # the HTTP client cannot send this header at all
        return
    assert answer.status_code < 500
    if 300 <= answer.status_code < 400:
        assert answer.headers["location"] in (GUIDE, SHOP)
