"""Markdown bodies compiled once per item into Jinja sources for the HTML and text parts.

Jinja expressions in the Markdown are protected while markdown-it, css-inline and inscriptis
run, then restored, so per recipient only Jinja runs. Pure: strings in, strings out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape

import jinja2
from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from markdown_it import MarkdownIt

from newsletter.content import inlining
from newsletter.content.inlining import LineMap
from newsletter.errors import ContentError

_MARKDOWN = MarkdownIt("commonmark", {"typographer": False}).enable("strikethrough")
_LINK = re.compile(r"<a\s[^>]*?href=\"([^\"]*)\"[^>]*>(.*?)</a>", re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")
_IMG = re.compile(r"<img\b[^>]*>")
_ALT = re.compile(r"\balt=\"([^\"]*)\"")
_ALONE = re.compile(r"^[ \t]*(xjinja\d+x)[ \t]*$", re.MULTILINE)
_TEXT_CONFIG = ParserConfig(display_images=True)


@dataclass(frozen=True)
class CompiledBody:
    html: str  # Jinja source, CSS inlined
    text: str  # Jinja source, plain text
    html_lines: LineMap
    text_lines: LineMap


def compile_body(
    markdown: str, *, path: str, first_line: int, css: str, environment: jinja2.Environment
) -> CompiledBody:
    """Compile *markdown* (which may hold Jinja) written from file line *first_line*."""
    try:
        environment.parse(markdown)
    except jinja2.TemplateSyntaxError as exc:
        line = first_line + (exc.lineno or 1) - 1
        raise ContentError(f"template syntax error: {exc.message}", path, line) from None
    protected = inlining.protect(markdown, first_line=first_line, comments=False)
    html = _MARKDOWN.render(_own_paragraphs(protected))
    for index, construct in enumerate(protected.constructs):
        if construct.block:  # a lone {% if %} line must not leave an empty paragraph
            html = html.replace(f"<p>xjinja{index}x</p>\n", f"xjinja{index}x\n")
    _check_images(html, markdown, path, first_line)
    text = get_text(_links_as_text(html), _TEXT_CONFIG).strip("\n") + "\n"
    # The HTML holds placeholders, not Jinja, so inline() passes them through untouched.
    inlined, _ = inlining.inline(html, path=path, css=css, first_line=first_line)
    html_source, html_lines = inlining.restore(inlined, protected.constructs, fallback=first_line)
    text_source, text_lines = inlining.restore(text, protected.constructs, fallback=first_line)
    return CompiledBody(html_source, text_source, html_lines, text_lines)


def _own_paragraphs(protected: inlining.Protected) -> str:
    """A block tag alone on its line (``{% if %}``) becomes its own paragraph, so Markdown
    does not glue it to the text around it; ``compile_body`` then unwraps that paragraph."""
    blocks = {f"xjinja{i}x" for i, c in enumerate(protected.constructs) if c.block}

    def spaced(match: re.Match[str]) -> str:
        token = match.group(1)
        return f"\n{token}\n" if token in blocks else match.group(0)

    return _ALONE.sub(spaced, protected.text)


def _links_as_text(html: str) -> str:
    """``<a href="u">label</a>`` reads as ``label (u)`` in the plain-text part."""

    def replace(match: re.Match[str]) -> str:
        href, label = match.group(1), match.group(2)
        label_text = unescape(_TAGS.sub("", label)).strip()
        target = href.removeprefix("mailto:")
        if not href or unescape(target) == label_text:
            return label
        return f"{label} ({target})"

    return _LINK.sub(replace, html)


def _check_images(html: str, markdown: str, path: str, first_line: int) -> None:
    for tag in _IMG.findall(html):
        alt = _ALT.search(tag)
        if alt is None or not alt.group(1).strip():
            line = first_line
            for offset, text in enumerate(markdown.splitlines()):
                if "![" in text or "<img" in text:
                    line = first_line + offset
                    break
            raise ContentError(
                "an image has no alt text: write ![what the image shows](url)", path, line
            )
