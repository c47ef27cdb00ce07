"""A real shop page on another loopback port posts the subscription form cross-origin."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from newsletter.app import App
from newsletter.settings import load_settings
from newsletter.web.app import create_web_app
from tests.browser import CHROMIUM_ARGS, chromium_path
from tests.conftest import base_environ
from tests.mailbox import read_outbox, text_part
from tests.servers import free_port, serve_asgi, serve_directory

FORM = """<!doctype html>
<html><head><meta charset="utf-8"><title>Back pain relief shop</title></head>
<body>
<h1>Subscribe to our newsletter</h1>
<form method="post" action="{service}/subscribe">
  <input type="email" name="email" id="email" required>
  <input type="text" name="first_name" id="name">
  <input type="hidden" name="source" value="blog-sidebar">
  <input type="hidden" name="redirect" value="{shop}/thanks.html">
  <input type="text" name="website" value="" style="display:none" tabindex="-1" autocomplete="off">
  <button type="submit" id="go">Subscribe</button>
</form>
</body></html>
"""


@pytest.mark.browser
def test_shop_form_posts_cross_origin_redirects_and_mails_confirmation(
    tmp_path: Path, sqlite_url: str
) -> None:
    browser_path = chromium_path()
    shop_port, service_port = free_port(), free_port()
    shop = f"http://127.0.0.1:{shop_port}"
    environ = base_environ(tmp_path, sqlite_url)
    environ["NEWSLETTER_ALLOWED_ORIGINS"] = shop
    environ["NEWSLETTER_BASE_URL"] = f"http://127.0.0.1:{service_port}"
    app = App(load_settings(environ))
    pages = tmp_path / "shop"
    pages.mkdir()
    service = f"http://127.0.0.1:{service_port}"
    (pages / "index.html").write_text(FORM.format(service=service, shop=shop))
    (pages / "thanks.html").write_text("<!doctype html><title>Thanks</title><h1>Thanks!</h1>")
    with (
        serve_directory(pages, shop_port),
        serve_asgi(create_web_app(app), service_port),
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{shop}/index.html")
        page.fill("#email", "Visitor@Example.org")
        page.fill("#name", "Vera")
        with page.expect_navigation(url=f"{shop}/thanks.html"):
            page.click("#go")
        assert page.url == f"{shop}/thanks.html"
        assert page.text_content("h1") == "Thanks!"
        browser.close()
    mails = read_outbox(app.settings.effective_outbox_dir)
    app.close()
    assert len(mails) == 1
    assert mails[0]["To"] == "Vera <visitor@example.org>"
    assert f"{service}/confirm/" in text_part(mails[0])
