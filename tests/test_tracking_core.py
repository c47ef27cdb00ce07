# ruff: noqa: E501 - the verdict table reads best as one case per line
"""The pure core of tracking: machine-vs-human verdicts (table-driven), link rewriting, and
the signed tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeSerializer

from newsletter.errors import TokenError
from newsletter.tokens import make_unsubscribe_token
from newsletter.tracking.classify import Hit, Kind, Verdict, classify, in_apple_range
from newsletter.tracking.links import rewrite
from newsletter.tracking.tokens import (
    TRAP_INDEX,
    ClickToken,
    make_click_token,
    make_open_token,
    read_click_token,
    read_open_token,
)

SENT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
LATER = SENT + timedelta(hours=3)
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
KEYS = ("new-key", "old-key")


@pytest.mark.parametrize(
    ("hit", "expected"),
    [
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent=CHROME), Verdict(True, "human"), id="human-click"),
        pytest.param(Hit(Kind.OPEN, LATER, SENT, user_agent=CHROME), Verdict(True, "human"), id="human-open"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent=CHROME, trap=True), Verdict(False, "trap link"), id="trap"),
        pytest.param(Hit(Kind.OPEN, LATER, SENT, provider_machine=True), Verdict(False, "sendgrid machine"), id="sg-machine-open"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, method="HEAD", user_agent=CHROME), Verdict(False, "head request"), id="head"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, method="head", user_agent=CHROME), Verdict(False, "head request"), id="head-lower"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent=""), Verdict(False, "no user agent"), id="empty-ua"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent="   "), Verdict(False, "no user agent"), id="blank-ua"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent=None), Verdict(True, "human"), id="unknown-ua-provider"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent="python-requests/2.32"), Verdict(False, "scanner ua"), id="python-requests"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent="Mozilla/5.0 (compatible; Proofpoint URL Defense)"), Verdict(False, "scanner ua"), id="proofpoint"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent="Mozilla/5.0 HeadlessChrome/120"), Verdict(False, "scanner ua"), id="headless"),
        pytest.param(Hit(Kind.OPEN, LATER, SENT, user_agent="Mozilla/5.0"), Verdict(False, "apple mpp ua"), id="mpp-ua"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent="Mozilla/5.0"), Verdict(True, "human"), id="bare-ua-click-is-not-mpp"),
        pytest.param(Hit(Kind.OPEN, LATER, SENT, user_agent=CHROME, ip="17.58.63.1"), Verdict(False, "apple mpp ip"), id="mpp-ip"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent=CHROME, ip="17.58.63.1"), Verdict(True, "human"), id="apple-ip-click"),
        pytest.param(Hit(Kind.OPEN, LATER, SENT, user_agent=CHROME, ip="18.0.0.1"), Verdict(True, "human"), id="not-apple-ip"),
        pytest.param(Hit(Kind.CLICK, SENT + timedelta(seconds=2), SENT, user_agent=CHROME), Verdict(False, "too soon"), id="2s"),
        pytest.param(Hit(Kind.CLICK, SENT + timedelta(seconds=9.9), SENT, user_agent=CHROME), Verdict(False, "too soon"), id="9.9s"),
        pytest.param(Hit(Kind.CLICK, SENT + timedelta(seconds=10), SENT, user_agent=CHROME), Verdict(True, "human"), id="10s"),
        pytest.param(Hit(Kind.CLICK, SENT - timedelta(seconds=1), SENT, user_agent=CHROME), Verdict(False, "too soon"), id="before-sent"),
        pytest.param(Hit(Kind.CLICK, LATER, None, user_agent=CHROME), Verdict(True, "human"), id="unknown-sent"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent=CHROME, other_clicks=[LATER - timedelta(seconds=1)]), Verdict(False, "burst"), id="burst-1s"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent=CHROME, other_clicks=[LATER + timedelta(milliseconds=300)]), Verdict(False, "burst"), id="burst-after"),
        pytest.param(Hit(Kind.CLICK, LATER, SENT, user_agent=CHROME, other_clicks=[LATER - timedelta(seconds=1.5)]), Verdict(True, "human"), id="1.5s-apart"),
        pytest.param(Hit(Kind.OPEN, LATER, SENT, user_agent=CHROME, other_clicks=[LATER]), Verdict(True, "human"), id="open-no-burst"),
        pytest.param(Hit(Kind.CLICK, SENT + timedelta(seconds=1), SENT, method="HEAD", trap=True), Verdict(False, "trap link"), id="first-rule-wins"),
    ],
)  # fmt: skip
def test_classify(hit: Hit, expected: Verdict) -> None:
    assert classify(hit) == expected


@pytest.mark.parametrize(
    "agent",
    [
        "Mozilla/5.0 (compatible; Barracuda Sentinel)", "Mimecast URL Protect", "Microsoft SafeLinks",
        "Symantec Email Security", "TrendMicro Link Check", "Forcepoint Security", "FortiGuard",
        "Sophos URL Scan", "Zscaler", "Mozilla/5.0 (compatible; bingpreview/2.0)", "PhantomJS/2.1",
        "Python-urllib/3.11", "python-httpx/0.27", "aiohttp/3.9", "curl/8.5.0", "Wget/1.21",
        "Go-http-client/1.1", "Java/17.0.2", "okhttp/4.12", "libwww-perl/6.72", "LinkScanner 1.0",
        "SomeCrawler", "Spider-Man", "Googlebot/2.1", "Mozilla/5.0 (compatible; Yahoo! Slurp)",
        "Mozilla/5.0 (compatible; examplebot; +https://bot.example)",
    ],
)  # fmt: skip
def test_every_known_scanner_agent_is_a_machine(agent: str) -> None:
    assert classify(Hit(Kind.CLICK, LATER, SENT, user_agent=agent)) == Verdict(False, "scanner ua")


@pytest.mark.parametrize(
    ("ip", "expected"),
    [("17.0.0.0", True), ("17.255.255.255", True), ("16.255.255.255", False), ("18.0.0.0", False),
     ("::1", False), ("not an ip", False), ("", False), (None, False)],
)  # fmt: skip
def test_in_apple_range(ip: str | None, expected: bool) -> None:
    assert in_apple_range(ip) is expected


HTML = (
    '<html><body class="x"><p><a href="https://a.example/?x=1&amp;y=2">A</a> '
    "<a href='http://b.example/'>B</a> <a href=\"mailto:me@example.org\">M</a> "
    '<a href="/relative">R</a> <a class="k" href="https://news.example/unsubscribe/t">U</a> '
    '<a href="https://a.example/?x=1&amp;y=2">A again</a></p></body></html>'
)


def test_rewrite_links_pixel_and_trap() -> None:
    tracked = rewrite(
        HTML,
        click_url=lambda i: f"C{i}",
        open_url="PIXEL",
        trap_url="TRAP",
        keep=["https://news.example/unsubscribe/t"],
    )
    assert tracked.links == ("https://a.example/?x=1&y=2", "http://b.example/")
    assert tracked.html == (
        '<html><body class="x"><a href="TRAP" style="display:none;font-size:0;line-height:0" '
        'aria-hidden="true" tabindex="-1"></a><p><a href="C0">A</a> '
        "<a href='C1'>B</a> <a href=\"mailto:me@example.org\">M</a> "
        '<a href="/relative">R</a> <a class="k" href="https://news.example/unsubscribe/t">U</a> '
        '<a href="C0">A again</a></p><img src="PIXEL" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px"></body></html>'
    )


def test_rewrite_with_nothing_on_changes_nothing() -> None:
    assert rewrite(HTML, click_url=None, open_url=None, trap_url=None).html == HTML


def test_rewrite_without_a_body_appends() -> None:
    tracked = rewrite("<p>x</p>", click_url=None, open_url="P", trap_url="T")
    assert tracked.html.startswith('<a href="T"')
    assert tracked.html.endswith(
        '<img src="P" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">'
    )


def test_tokens_round_trip_and_rotate() -> None:
    click = make_click_token(42, 3, keys=KEYS)
    assert read_click_token(click, keys=KEYS) == ClickToken(42, 3)
    assert read_click_token(click, keys=("newer", *KEYS)) == ClickToken(42, 3)
    assert read_click_token(make_click_token(42, TRAP_INDEX, keys=KEYS), keys=KEYS).trap
    assert read_open_token(make_open_token(42, keys=KEYS), keys=KEYS) == 42


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(make_open_token(42, keys=KEYS), id="open-as-click"),
        pytest.param(make_unsubscribe_token("abc", keys=KEYS), id="unsubscribe-as-click"),
        pytest.param(make_click_token(42, 3, keys=("other",)), id="other-key"),
        pytest.param(make_click_token(0, 3, keys=KEYS), id="zero-id"),
        pytest.param(make_click_token(2**63, 3, keys=KEYS), id="huge-id"),
        pytest.param(make_click_token(1, -2, keys=KEYS), id="negative-index"),
        pytest.param(make_click_token(1, 10_000, keys=KEYS), id="huge-index"),
        pytest.param("x" * 201, id="too-long"),
        pytest.param("", id="empty"),
        pytest.param("WzQyLDNd", id="unsigned"),
    ],
)
def test_bad_click_tokens(token: str) -> None:
    with pytest.raises(TokenError):
        read_click_token(token, keys=KEYS)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(make_click_token(42, 3, keys=KEYS), id="click-as-open"),
        pytest.param(make_open_token(True, keys=KEYS), id="bool"),  # type: ignore[arg-type]
        pytest.param(make_open_token(-1, keys=KEYS), id="negative"),
        pytest.param(make_open_token(42, keys=("other",)), id="other-key"),
    ],
)
def test_bad_open_tokens(token: str) -> None:
    with pytest.raises(TokenError):
        read_open_token(token, keys=KEYS)


def test_tokens_already_mailed_keep_reading() -> None:
    """Known answers made once: a changed salt or encoding would break every tracking link
    already in an inbox."""
    assert make_open_token(42, keys=KEYS) == "NDI.UoFZ1EKnH4yLXfgLcVSuzYuafKs"
    assert make_click_token(42, 3, keys=KEYS) == "WzQyLDNd.rOd37nHhLD_TShYn9sMqjv4v080"
    assert read_open_token("NDI.UoFZ1EKnH4yLXfgLcVSuzYuafKs", keys=KEYS) == 42
    assert read_click_token("WzQyLDNd.rOd37nHhLD_TShYn9sMqjv4v080", keys=KEYS) == ClickToken(42, 3)


def test_the_largest_id_and_index_are_accepted() -> None:
    biggest = make_click_token(2**63 - 1, 9_999, keys=KEYS)
    assert read_click_token(biggest, keys=KEYS) == ClickToken(2**63 - 1, 9_999)
    assert not read_click_token(biggest, keys=KEYS).trap
    assert read_open_token(make_open_token(2**63 - 1, keys=KEYS), keys=KEYS) == 2**63 - 1
    assert read_open_token(make_open_token(1, keys=KEYS), keys=KEYS) == 1


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(make_open_token(0, keys=KEYS), id="zero"),
        pytest.param(make_open_token(2**63, keys=KEYS), id="huge"),
        pytest.param(make_open_token("42", keys=KEYS), id="string"),  # type: ignore[arg-type]
        pytest.param("x" * 201, id="too-long"),
    ],
)
def test_more_bad_open_tokens(token: str) -> None:
    with pytest.raises(TokenError, match="this tracking link is not valid"):
        read_open_token(token, keys=KEYS)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param([42], id="one-item"),
        pytest.param([42, 3, 1], id="three-items"),
        pytest.param([42, True], id="bool-index"),
        pytest.param([42, "3"], id="string-index"),
        pytest.param([True, 3], id="bool-id"),
        pytest.param({"0": 42}, id="object"),
    ],
)
def test_malformed_click_payloads_are_refused(value: object) -> None:
    token = str(URLSafeSerializer(["new-key"], salt="newsletter.track.click").dumps(value))
    with pytest.raises(TokenError, match="this tracking link is not valid"):
        read_click_token(token, keys=KEYS)


def test_a_token_of_200_characters_is_still_read() -> None:
    # length is checked before the signature: 200 is read (and refused as unsigned), 201 is not
    with pytest.raises(TokenError) as at_limit:
        read_click_token("x" * 200, keys=KEYS)
    assert at_limit.value.__cause__ is not None
    with pytest.raises(TokenError) as over:
        read_click_token("x" * 201, keys=KEYS)
    assert over.value.__cause__ is None


def test_tokens_need_a_key() -> None:
    with pytest.raises(ValueError, match="at least one secret key"):
        make_open_token(1, keys=())
    with pytest.raises(TokenError) as reading:
        read_click_token("WzQyLDNd.rOd37nHhLD_TShYn9sMqjv4v080", keys=())
    assert "at least one secret key" in str(reading.value.__cause__)
