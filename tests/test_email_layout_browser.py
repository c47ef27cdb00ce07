"""The welcome email in headless Chromium: no horizontal scrolling on a phone or at 600px."""

from __future__ import annotations

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
