"""CSS inlining of Jinja template sources, done once per template or item, never per recipient.

css-inline parses HTML, so Jinja constructs are first swapped for placeholders it leaves alone
(an HTML comment between elements, a plain word inside a tag or text), then put back. The
result is still a Jinja source, so per-recipient rendering costs one Jinja render.

Pure: strings in, strings out. ``LineMap`` remembers, for each line of the restored source,
which Jinja constructs sit there and on which line of the original file they were written,
so a render-time error can name the line the author wrote.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import css_inline

from newsletter.errors import ContentError

JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_PLACEHOLDER = re.compile(r"<!--(xjinja\d+x)-->|(xjinja\d+x)(?:=\"\")?")
_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)
_START_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9]*)")
_PARSER_ADDED = frozenset({"html", "head", "body", "tbody"})
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


@dataclass(frozen=True)
class Construct:
    text: str  # the Jinja source, e.g. "{{ subscriber.first_name }}"
    line: int  # line in the original file
    block: bool  # a {% %} or {# #} tag, not an expression


@dataclass
class Protected:
    """A source with Jinja swapped out; ``restore`` puts it back."""

    text: str
    constructs: list[Construct] = field(default_factory=list)


@dataclass(frozen=True)
class LineMap:
    """Restored-source line -> the constructs on it (text, original line)."""

    lines: dict[int, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    fallback: int = 1

    def original_line(self, line: int, hint: str = "") -> int:
        """Best original line for an error on restored *line*; *hint* is a name it mentions."""
        candidates = self.lines.get(line, ())
        for text, original in candidates:
            if hint and hint in text:
                return original
        if candidates:
            return candidates[0][1]
        return self.fallback


def protect(source: str, *, first_line: int = 1, comments: bool = True) -> Protected:
    """Swap each Jinja construct for a placeholder css-inline and Markdown leave intact.

    With *comments*, block tags between elements become HTML comments (so a ``{% for %}``
    between table rows is not moved by the HTML parser); otherwise every placeholder is a word.
    """
    out: list[str] = []
    constructs: list[Construct] = []
    position = 0
    for match in JINJA.finditer(source):
        out.append(source[position : match.start()])
        text = match.group()
        block = not text.startswith("{{")
        line = first_line + source.count("\n", 0, match.start())
        token = f"xjinja{len(constructs)}x"
        so_far = "".join(out)
        inside_tag = so_far.rfind("<") > so_far.rfind(">")
        out.append(f"<!--{token}-->" if comments and block and not inside_tag else token)
        constructs.append(Construct(text, line, block))
        position = match.end()
    out.append(source[position:])
    return Protected("".join(out), constructs)


def restore(text: str, constructs: list[Construct], *, fallback: int = 1) -> tuple[str, LineMap]:
    """Put the Jinja constructs back; return the source and its ``LineMap``."""
    out: list[str] = []
    lines: dict[int, list[tuple[str, int]]] = {}
    position = 0
    line = 1
    for match in _PLACEHOLDER.finditer(text):
        token = match.group(1) or match.group(2)
        index = int(token[len("xjinja") : -1])
        if index >= len(constructs):
            continue
        chunk = text[position : match.start()]
        line += chunk.count("\n")
        construct = constructs[index]
        lines.setdefault(line, []).append((construct.text, construct.line))
        out.append(chunk)
        out.append(construct.text)
        line += construct.text.count("\n")
        position = match.end()
    out.append(text[position:])
    mapped = {key: tuple(value) for key, value in lines.items()}
    return "".join(out), LineMap(mapped, fallback)


def stylesheet(source: str) -> str:
    """The CSS of every ``<style>`` block in *source*."""
    return "\n".join(_STYLE.findall(source))


def is_document(source: str) -> bool:
    head = source.lstrip()[:200].lower()
    return head.startswith("<!doctype") or "<html" in head


def inline(source: str, *, path: str, css: str = "", first_line: int = 1) -> tuple[str, LineMap]:
    """Inline *css* (and the source's own ``<style>``) into a Jinja HTML template source.

    A full document keeps its ``@media`` rules in a ``<style>``; a fragment (a child template,
    a Markdown body) gets the layout's *css* inlined. Raises ``ContentError`` if the HTML
    parser had to change the markup (e.g. a bare ``<tr>`` outside a ``<table>``).
    """
    protected = protect(source, first_line=first_line)
    try:
        if is_document(protected.text):
            inlined = (
                _INLINER.inline(protected.text)
                if not css
                else css_inline.CSSInliner(
                    keep_at_rules=True, load_remote_stylesheets=False, extra_css=css
                ).inline(protected.text)
            )
        else:
            inlined = _INLINER.inline_fragment(protected.text, css)
    except (ValueError, css_inline.InlineError) as exc:
        raise ContentError(f"CSS could not be inlined: {exc}", path, first_line) from None
    _check_structure(protected.text, inlined, path, first_line)
    return restore(inlined, protected.constructs, fallback=first_line)


def _check_structure(before: str, after: str, path: str, line: int) -> None:
    wanted = Counter(tag.lower() for tag in _START_TAG.findall(_STYLE.sub("", before)))
    got = Counter(tag.lower() for tag in _START_TAG.findall(_STYLE.sub("", after)))
    for tags in (wanted, got):
        for name in _PARSER_ADDED:
            tags.pop(name, None)
    lost = sorted((wanted - got).elements())
    if lost:
        raise ContentError(
            f"the HTML parser dropped or moved <{lost[0]}> while inlining CSS: check that "
            "tags are closed and that table rows sit inside a <table>",
            path,
            line,
        )
