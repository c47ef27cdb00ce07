"""Per-recipient rendering of a compiled item, and the footer guard.

An item is compiled once (``compile_item``): subject, preheader, HTML part and text part
become cached Jinja templates with CSS already inlined. ``render_item`` then costs a few
Jinja calls and a substring check, and refuses marketing email without its legal footer.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jinja2
from markupsafe import escape

from newsletter.content.bodies import compile_body
from newsletter.content.inlining import LineMap
from newsletter.content.items import ItemLines
from newsletter.content.model import (
    NO_EVENT,
    ContentItem,
    EventContext,
    Links,
    RenderedEmail,
    SubscriberContext,
)
from newsletter.content.templates import ITEM_PREFIX, EmailLoader
from newsletter.errors import ContentError, RenderError

_NAME_IN_MESSAGE = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)' (?:is undefined|has no attribute)")
_ATTRIBUTE_IN_MESSAGE = re.compile(r"has no attribute '([A-Za-z_][A-Za-z0-9_]*)'")
_AVAILABLE = (
    "templates may use subscriber.email, subscriber.first_name, subscriber.timezone, "
    "subscriber.tags, subscriber.attributes.<name>, event.name, event.properties.<name>, "
    "links.unsubscribe, links.web_version, links.confirm, links.keep, item, subject, "
    "preheader, sender_name, postal_address, site and base_url"
)
_RUNTIME_ERRORS = (jinja2.TemplateError, TypeError, ValueError, ArithmeticError)


@dataclass(frozen=True)
class Footer:
    """What every marketing email must show; the same for every item of a library."""

    sender_name: str
    postal_address: str
    base_url: str

    @property
    def site(self) -> str:
        return urlsplit(self.base_url).netloc or self.base_url


@dataclass(frozen=True)
class CompiledItem:
    item: ContentItem
    lines: ItemLines
    subject: jinja2.Template
    preheader: jinja2.Template
    html: jinja2.Template
    text: jinja2.Template
    html_lines: LineMap
    text_lines: LineMap


def compile_item(
    item: ContentItem, lines: ItemLines, environment: jinja2.Environment, loader: EmailLoader
) -> CompiledItem:
    """Compile *item* once; raises ``ContentError`` with ``file:line`` for syntax errors."""
    body = compile_body(
        item.body,
        path=item.path,
        first_line=lines.body,
        css=loader.inherited_css(f"{item.template}.html"),
        environment=environment,
    )
    parts: dict[str, jinja2.Template] = {}
    for part, source, line_map in (
        ("html", body.html, body.html_lines),
        ("txt", body.text, body.text_lines),
    ):
        name = f"{ITEM_PREFIX}{item.id}.{part}"
        generated = (
            f'{{% extends "{item.template}.{part}" %}}{{% block body %}}{source}{{% endblock %}}'
        )
        loader.add(name, generated, item.path, line_map)
        try:
            parts[part] = environment.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            line = line_map.original_line(exc.lineno)
            raise ContentError(f"template syntax error: {exc.message}", item.path, line) from None
    return CompiledItem(
        item=item,
        lines=lines,
        subject=_string_template(environment, item.subject, item.path, lines.subject),
        preheader=_string_template(environment, item.preheader, item.path, lines.preheader),
        html=parts["html"],
        text=parts["txt"],
        html_lines=body.html_lines,
        text_lines=body.text_lines,
    )


def render_item(
    compiled: CompiledItem,
    subscriber: SubscriberContext,
    links: Links,
    footer: Footer,
    loader: EmailLoader,
    event: EventContext = NO_EVENT,
) -> RenderedEmail:
    """Render one email for one subscriber; ``RenderError`` if it is not fit to send."""
    item = compiled.item
    if not item.transactional:
        _require_footer_inputs(item, links, footer)
    context: dict[str, Any] = {
        "subscriber": subscriber,
        "event": event,
        "links": links,
        "item": item,
        "sender_name": footer.sender_name,
        "postal_address": footer.postal_address,
        "base_url": footer.base_url,
        "site": footer.site,
    }
    subject = _one_line(_run(compiled.subject, context, compiled, None, compiled.lines.subject))
    preheader = _one_line(
        _run(compiled.preheader, context, compiled, None, compiled.lines.preheader)
    )
    context["subject"] = subject
    context["preheader"] = preheader
    html = _run(compiled.html, context, compiled, compiled.html_lines, None, loader)
    text = _run(compiled.text, context, compiled, compiled.text_lines, None, loader)
    if not item.transactional:
        _check_footer(item, html, text, links, footer)
    return RenderedEmail(item.id, subject, preheader, html, text, item.transactional)


def _require_footer_inputs(item: ContentItem, links: Links, footer: Footer) -> None:
    if not footer.postal_address.strip():
        raise RenderError(
            f"{item.id} is marketing email and must show your postal address: set "
            "NEWSLETTER_POSTAL_ADDRESS (e.g. in .env) and try again",
            item.path,
        )
    if not links.unsubscribe:
        raise RenderError(
            f"{item.id} is marketing email and needs links.unsubscribe (the subscriber's "
            "unsubscribe URL); only transactional email may go without it",
            item.path,
        )


def _check_footer(item: ContentItem, html: str, text: str, links: Links, footer: Footer) -> None:
    needed = (("unsubscribe link", links.unsubscribe), ("postal address", footer.postal_address))
    for what, value in needed:
        for part, output, form in (("HTML", html, str(escape(value))), ("text", text, value)):
            if form not in output:
                raise RenderError(
                    f"{item.id}: the {part} part lacks the {what} ({value!r}); template "
                    f"{item.template!r} must keep the footer of base.{part.lower()[:4]}",
                    item.path,
                )


def _string_template(
    environment: jinja2.Environment, source: str, path: str, line: int
) -> jinja2.Template:
    try:
        return environment.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ContentError(f"template syntax error: {exc.message}", path, line) from None


def _run(
    template: jinja2.Template,
    context: Mapping[str, Any],
    compiled: CompiledItem,
    line_map: LineMap | None,
    fixed_line: int | None,
    loader: EmailLoader | None = None,
) -> str:
    try:
        return template.render(context)
    except _RUNTIME_ERRORS as exc:
        message = getattr(exc, "message", None) or str(exc)
        path, line = _locate(exc, compiled, line_map, fixed_line, loader)
        kind = "undefined variable" if isinstance(exc, jinja2.UndefinedError) else "render error"
        hint = f" ({_AVAILABLE})" if isinstance(exc, jinja2.UndefinedError) else ""
        raise RenderError(f"{compiled.item.id}: {kind}: {message}{hint}", path, line) from exc


def _locate(
    exc: BaseException,
    compiled: CompiledItem,
    line_map: LineMap | None,
    fixed_line: int | None,
    loader: EmailLoader | None,
) -> tuple[str, int | None]:
    """The file and line the author wrote, from Jinja's rewritten traceback."""
    if fixed_line is not None:
        return compiled.item.path, fixed_line
    message = str(exc)
    match = _ATTRIBUTE_IN_MESSAGE.search(message) or _NAME_IN_MESSAGE.search(message)
    hint = match.group(1) if match else ""
    known = dict(loader.line_maps) if loader is not None else {}
    if line_map is not None:
        known[compiled.item.path] = line_map
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename in known and frame.lineno is not None:
            return frame.filename, known[frame.filename].original_line(frame.lineno, hint)
        if frame.filename.endswith((".txt", ".html")) and frame.lineno is not None:
            return frame.filename, frame.lineno
    return compiled.item.path, None


def _one_line(value: str) -> str:
    """Subjects and preheaders are header-like: no newlines, single spaces."""
    return " ".join(value.split())
