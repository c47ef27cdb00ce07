"""Rendering: every shipped item renders, carries its footer, and fails loudly when it can't."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest
from content_fixtures import ADDRESS, ROOT, TIP, build_library
from markupsafe import escape

from newsletter.content.library import ContentLibrary
from newsletter.content.model import Links, SubscriberContext
from newsletter.errors import ContentError, ItemNotFound, RenderError
from newsletter.settings import Settings

UNSUBSCRIBE = "https://shop.example/unsubscribe/tok-123?a=1&b=2"
LINKS = Links(unsubscribe=UNSUBSCRIBE, confirm="https://shop.example/confirm/c-456")
ALEX = SubscriberContext(email="alex@example.com", first_name="Alex", tags=("desk",))
NAMELESS = SubscriberContext(email="sam@example.com")


def load(root: Path, *, address: str = ADDRESS, strict: bool = True) -> ContentLibrary:
    return ContentLibrary.load(
        root / "content",
        root / "templates" / "emails",
        postal_address=address,
        sender_name="Backease",
        base_url="https://shop.example",
        strict=strict,
    )


@pytest.fixture(scope="module")
def shipped() -> ContentLibrary:
    return load(ROOT)


SHIPPED_IDS = sorted(
    f"{path.parent.name}/{path.stem}" for path in (ROOT / "content").glob("*/*.md")
)


def test_the_shipped_library_has_what_the_issue_asks_for(shipped: ContentLibrary) -> None:
    kinds = [item.kind for item in shipped.items()]
    assert kinds.count("tips") >= 12
    assert kinds.count("tutorials") >= 4
    assert kinds.count("campaigns") >= 1
    testimonials = [item for item in shipped.items() if item.kind == "testimonials"]
    assert len(testimonials) >= 4
    assert all(item.example for item in testimonials)
    assert shipped.item("system/confirmation").transactional
    assert not shipped.item("system/welcome").transactional
    assert shipped.check() == []


def test_the_shipped_sequence(shipped: ContentLibrary) -> None:
    sequence = shipped.sequence("back-pain-basics")
    assert sequence.enroll == "on_confirm"
    assert (str(sequence.send_window.start), str(sequence.send_window.end)) == (
        "08:00:00",
        "11:00:00",
    )
    assert sequence.steps[0].item_id == "system/welcome"
    assert sequence.steps[0].after.total_seconds() == 0
    assert len(sequence.steps) >= 8
    assert 25 <= sum(step.after.days for step in sequence.steps) <= 35
    assert sequence.then is not None
    assert sequence.then.every.days == 4
    assert sequence.then.kinds == ("tips", "testimonials", "tutorials")


@pytest.mark.parametrize("item_id", SHIPPED_IDS)
@pytest.mark.parametrize("subscriber", [ALEX, NAMELESS], ids=["named", "nameless"])
def test_every_shipped_item_renders(
    shipped: ContentLibrary, item_id: str, subscriber: SubscriberContext
) -> None:
    """Under StrictUndefined, HTML and text, with the footer every marketing email needs."""
    email = shipped.render(item_id, subscriber, LINKS)
    assert 0 < len(email.subject) < 60
    assert email.preheader
    assert "None" not in email.subject
    assert email.html.startswith("<!DOCTYPE html>")
    assert email.text.strip()
    assert "{{" not in email.html
    assert "{%" not in email.html
    assert "xjinja" not in email.html
    assert "{{" not in email.text
    assert "xjinja" not in email.text
    assert _hidden_preheader(email.html) == email.preheader
    assert f"<title>{escape(email.subject)}</title>" in email.html
    for image in re.findall(r"<img\b[^>]*>", email.html):
        assert re.search(r'alt="[^"]+"', image), image
    _assert_no_inlinable_style(email.html)
    item = shipped.item(item_id)
    if item.transactional:
        assert LINKS.confirm
        assert LINKS.confirm in email.text
        assert "Unsubscribe" not in email.html
    else:
        assert f'href="{escape(UNSUBSCRIBE)}"' in email.html
        assert f"Unsubscribe with one click: {UNSUBSCRIBE}" in email.text
        assert str(escape(ADDRESS)) in email.html
        assert ADDRESS in email.text
        assert "because you subscribed to emails from Backease" in email.html
    assert ("not medical advice" in email.html) is item.medical
    assert ("not medical advice" in email.text) is item.medical
    assert ("Example testimonial — replace with a real customer story" in email.html) is (
        item.example
    )


def _hidden_preheader(html: str) -> str:
    match = re.search(r'<div class="preheader" style="display: none;[^"]*">([^<]*)</div>', html)
    assert match, "no hidden preheader"
    return unescape(match.group(1).split("\u2007")[0]).strip()


def _assert_no_inlinable_style(html: str) -> None:
    """A <style> may stay only for @media rules, which no inline style can express."""
    for block in re.findall(r"<style[^>]*>(.*?)</style>", html, re.DOTALL):
        rest = block
        while "@media" in rest:
            start = rest.index("@media")
            depth, end = 0, start
            for end in range(rest.index("{", start), len(rest)):
                depth += {"{": 1, "}": -1}.get(rest[end], 0)
                if depth == 0:
                    break
            rest = rest[:start] + rest[end + 1 :]
        assert rest.strip() == "", f"style rules left un-inlined: {rest.strip()[:80]}"


def test_every_element_styled_by_the_layout_gets_inline_style(shipped: ContentLibrary) -> None:
    html = shipped.render("tips/meet-your-ql", ALEX, LINKS).html
    for tag in ("<h1", "<h2", "<p", "<li", "<a "):
        for found in re.findall(rf"{tag}\b[^>]*>", html):
            assert "style=" in found, found


def test_the_subscriber_and_links_personalise_the_email(shipped: ContentLibrary) -> None:
    named = shipped.render("tips/meet-your-ql", ALEX, LINKS)
    nameless = shipped.render("tips/meet-your-ql", NAMELESS, LINKS)
    assert named.subject == "Meet your QL, Alex"
    assert nameless.subject == "Meet your QL, friend"
    assert "Hi Alex," in named.text
    assert "Hi there," in nameless.text


def test_values_are_escaped_in_html_but_not_in_text(tmp_path: Path) -> None:
    library = load(build_library(tmp_path))
    evil = SubscriberContext(email="x@example.com", first_name="<b>Bo & Co</b>")
    email = library.render("tips/meet-your-ql", evil, LINKS)
    assert "Hi &lt;b&gt;Bo &amp; Co&lt;/b&gt;," in email.html
    assert "Hi <b>Bo & Co</b>," in email.text
    assert email.subject == "Meet your QL, <b>Bo & Co</b>"


def test_subject_is_one_line_even_if_a_name_holds_a_newline(tmp_path: Path) -> None:
    library = load(build_library(tmp_path))
    sneaky = SubscriberContext(email="x@example.com", first_name="Al\r\nBcc: x@evil.test")
    assert library.render("tips/meet-your-ql", sneaky, LINKS).subject == (
        "Meet your QL, Al Bcc: x@evil.test"
    )


@pytest.mark.parametrize("address", ["", "   "], ids=["empty", "blank"])
def test_render_refuses_marketing_email_without_postal_address(
    tmp_path: Path, address: str
) -> None:
    library = load(build_library(tmp_path), address=address)
    with pytest.raises(RenderError, match="set NEWSLETTER_POSTAL_ADDRESS"):
        library.render("tips/meet-your-ql", ALEX, LINKS)
    # The confirmation is transactional: it goes out and simply shows no address.
    email = library.render("system/confirmation", ALEX, LINKS)
    assert "https://shop.example/confirm/c-456" in email.html


def test_render_refuses_marketing_email_without_unsubscribe_link(tmp_path: Path) -> None:
    library = load(build_library(tmp_path))
    with pytest.raises(RenderError, match=r"needs links\.unsubscribe"):
        library.render("tips/meet-your-ql", ALEX, Links())


def test_render_refuses_a_template_that_drops_the_footer(tmp_path: Path) -> None:
    root = build_library(tmp_path)
    base = root / "templates/emails/base.html"
    base.write_text(base.read_text().replace('href="{{ links.unsubscribe }}"', 'href="#"'))
    library = load(root)
    with pytest.raises(RenderError) as caught:
        library.render("tips/meet-your-ql", ALEX, LINKS)
    assert "the HTML part lacks the unsubscribe link" in str(caught.value)
    assert caught.value.path == str(root / "content/tips/meet-your-ql.md")


def test_multi_line_postal_address_is_shown_on_one_line(tmp_path: Path) -> None:
    library = load(build_library(tmp_path), address="12 Harbour Road\nBristol\n")
    email = library.render("tips/meet-your-ql", ALEX, LINKS)
    assert "12 Harbour Road, Bristol" in email.text


def test_undefined_variable_in_a_template_names_the_template_line(tmp_path: Path) -> None:
    root = build_library(tmp_path)
    tip = root / "templates/emails/tip.html"
    tip.write_text(tip.read_text().replace("{{ subject }}", "{{ subject }} {{ shop.name }}"))
    library = load(root)
    with pytest.raises(RenderError) as caught:
        library.render("tips/meet-your-ql", ALEX, LINKS)
    assert str(caught.value).startswith(
        f"{tip}:4: tips/meet-your-ql: undefined variable: 'shop' is undefined"
    )


def test_unknown_item(shipped: ContentLibrary) -> None:
    with pytest.raises(ItemNotFound, match="no content item 'tips/nope'"):
        shipped.render("tips/nope", ALEX, LINKS)
    with pytest.raises(LookupError):
        shipped.item("tips/nope")
    with pytest.raises(LookupError, match="no sequence named 'nope'"):
        shipped.sequence("nope")


def test_strict_load_raises_the_first_problem_and_points_to_check(tmp_path: Path) -> None:
    root = build_library(tmp_path, {"content/tips/meet-your-ql.md": TIP + "{{ oops }\n"})
    with pytest.raises(ContentError, match="run `newsletter content check`"):
        load(root)
    lenient = load(root, strict=False)
    assert [item.id for item in lenient.items()] == ["system/confirmation", "system/welcome"]
    assert next(str(problem) for problem in lenient.check()).startswith(
        f"{root / 'content/tips/meet-your-ql.md'}:9: template syntax error"
    )


def test_jinja_between_table_rows_survives_css_inlining(tmp_path: Path) -> None:
    root = build_library(tmp_path)
    (root / "templates/emails/tip.html").write_text(
        '{% extends "base.html" %}\n{% block content %}\n<table role="presentation">\n'
        "{% for tag in item.tags %}\n<tr><td>{{ tag }}</td></tr>\n{% endfor %}\n</table>\n"
        "{% block body %}{% endblock %}\n{% endblock %}\n"
    )
    html = load(root).render("tips/meet-your-ql", ALEX, LINKS).html
    assert re.search(r"<table[^>]*>\s*<tbody>\s*<tr><td[^>]*>ql</td></tr>\s*</tbody>", html)


def test_a_bare_table_row_in_a_template_is_reported(tmp_path: Path) -> None:
    root = build_library(tmp_path)
    tip = root / "templates/emails/tip.html"
    tip.write_text(
        '{% extends "base.html" %}\n{% block content %}\n<tr><td>x</td></tr>\n'
        "{% block body %}{% endblock %}\n{% endblock %}\n"
    )
    problems = [str(p) for p in load(root, strict=False).check()]
    assert f"{tip}:1: the HTML parser dropped or moved <td> while inlining CSS" in " ".join(
        problems
    )


def _library_settings(root: Path) -> Settings:
    return Settings(
        content_dir=root / "content",
        templates_dir=root / "templates" / "emails",
        postal_address=ADDRESS,
        from_email="news@shop.example",
        base_url="https://shop.example",
    )


def test_a_process_loads_each_state_of_the_files_once(tmp_path: Path) -> None:
    """``load_library`` reuses a library only for the same bytes and footer values: an
    edit of the same length, a new file, a changed footer value and strict/non-strict
    each give a library that is loaded again (and sees the change)."""
    from newsletter.content.library import load_library

    root = build_library(tmp_path)
    settings = _library_settings(root)
    first = load_library(settings)
    assert load_library(settings) is first
    tip = root / "content" / "tips" / "meet-your-ql.md"
    tip.write_text(tip.read_text().replace("Meet your QL", "Greet your QL"))
    edited = load_library(settings)
    assert edited is not first
    assert edited.item("tips/meet-your-ql").subject.startswith("Greet your QL")
    (root / "content" / "tips" / "second.md").write_text(TIP)
    added = load_library(settings)
    assert [i.id for i in added.items()] == [i.id for i in edited.items()] + ["tips/second"]
    moved = load_library(settings.model_copy(update={"postal_address": "1 Other St"}))
    assert moved is not added
    assert moved.footer.postal_address == "1 Other St"
    assert load_library(settings, strict=False) is not added
    assert load_library(settings) is added


def test_an_edit_inside_a_linked_folder_is_a_new_library(tmp_path: Path) -> None:
    """A content folder that is a link (``content/tips -> elsewhere``) is followed, as the
    loader follows it: an edit there is seen by the next load."""
    from newsletter.content.library import load_library

    root = build_library(tmp_path / "shop")
    elsewhere = tmp_path / "elsewhere"
    (root / "content" / "tips").rename(elsewhere)
    (root / "content" / "tips").symlink_to(elsewhere, target_is_directory=True)
    settings = _library_settings(root)
    first = load_library(settings)
    tip = elsewhere / "meet-your-ql.md"
    tip.write_text(tip.read_text().replace("Meet your QL", "Greet your QL"))
    edited = load_library(settings)
    assert edited is not first
    assert edited.item("tips/meet-your-ql").subject.startswith("Greet your QL")
