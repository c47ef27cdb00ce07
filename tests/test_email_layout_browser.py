"""The welcome email in headless Chromium: no horizontal scrolling on a phone or at 600px."""

from __future__ import annotations

import re

import pytest
from content_fixtures import ADDRESS, ROOT

from newsletter.content.library import ContentLibrary
from newsletter.content.model import Links, SubscriberContext
from tests.browser import CHROMIUM_ARGS, chromium_path


@pytest.mark.browser
@pytest.mark.parametrize("width", [375, 600])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_welcome_email_fits_the_viewport(width: int, scheme: str) -> None:
    from playwright.sync_api import sync_playwright

    library = ContentLibrary.load(
        ROOT / "content",
        ROOT / "templates" / "emails",
        postal_address=ADDRESS,
        sender_name="Backease",
        base_url="https://shop.example",
    )
    long_link = "https://shop.example/unsubscribe/" + "x" * 120
    email = library.render(
        "system/welcome",
        SubscriberContext(email="alexandra.longname@example.com", first_name="Alexandra"),
        Links(unsubscribe=long_link),
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
            page.route("**/*", lambda route: route.abort())  # no network, ever
            page.set_content(email.html)
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            inner_width = page.evaluate("window.innerWidth")
            container = page.evaluate(
                "document.querySelector('.container').getBoundingClientRect().width"
            )
            preheader_visible = page.evaluate(
                "getComputedStyle(document.querySelector('.preheader')).display"
            )
            unsubscribe = page.get_by_role("link", name="Unsubscribe")
            unsubscribe_visible = unsubscribe.is_visible()
            background = page.evaluate(
                "getComputedStyle(document.querySelector('.container')).backgroundColor"
            )
        finally:
            browser.close()
    assert scroll_width <= inner_width
    assert container <= 600
    assert preheader_visible == "none"
    assert unsubscribe_visible
    expected = "rgb(30, 30, 30)" if scheme == "dark" else "rgb(255, 255, 255)"
    assert background == expected


# Gmail and Outlook drop ``overflow-wrap``/``word-break``, so a layout may not rely on them:
# every shipped email is checked with those properties removed.
_WRAP_RULES = re.compile(r"(?:overflow-wrap|word-wrap|word-break)\s*:\s*[^;\"]+;?", re.I)


@pytest.mark.browser
def test_no_shipped_email_is_wider_than_a_phone_without_overflow_wrap() -> None:
    """At 375px, with overflow-wrap ignored as Gmail does, no element of any shipped email
    (confirmation with its long confirm link included) reaches past the viewport."""
    from playwright.sync_api import sync_playwright

    library = ContentLibrary.load(
        ROOT / "content",
        ROOT / "templates" / "emails",
        postal_address=ADDRESS,
        sender_name="Backease",
        base_url="https://shop.example",
    )
    token = "c1." + "A1b2C3d4E5" * 16  # as long and as unbreakable as a real signed token
    links = Links(
        unsubscribe="https://news.shop.example/unsubscribe/" + token + "?d=123456",
        confirm="https://news.shop.example/confirm/" + token,
    )
    subscriber = SubscriberContext(email="alexandra.longname@example.com", first_name="Alexandra")
    too_wide: dict[str, float] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 800})
            page.route("**/*", lambda route: route.abort())  # no network, ever
            for item in library.items():
                html = _WRAP_RULES.sub("", library.render(item.id, subscriber, links).html)
                assert "overflow-wrap" not in html
                page.set_content(html)
                widest = page.evaluate(
                    "Math.max(document.documentElement.scrollWidth, ...Array.from("
                    "document.body.querySelectorAll('*'), e => e.getBoundingClientRect().right))"
                )
                if widest > 375:
                    too_wide[item.id] = widest
        finally:
            browser.close()
    assert too_wide == {}
