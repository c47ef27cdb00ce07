"""Rewrite a rendered email's HTML for tracking (pure): links, open pixel, trap link.

* Every ``href`` to an ``http(s)`` URL becomes ``<base>/t/c/<token>``; the same URL twice
  gets one index. The unsubscribe link (and anything in ``keep``) stays as written: it
  must work without us and the footer check looks for it. ``mailto:`` and relative links
  are left alone. The plain-text part is never rewritten: a reader of plain text sees the
  real URL.
* The pixel (``<base>/t/o/<token>``) goes just before ``</body>``.
* The trap link is an empty, hidden anchor no person can see or reach with the keyboard;
  a visit to it is a machine by definition.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_BODY_START = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class Tracked:
    html: str
    links: tuple[str, ...]  # by index: the original URLs


def rewrite(
    source: str,
    *,
    click_url: Callable[[int], str] | None,
    open_url: str | None,
    trap_url: str | None,
    keep: Collection[str] = (),
) -> Tracked:
    """``source`` with its links, pixel and trap as configured; ``links`` lists the
    original URLs by index (empty without ``click_url``)."""
    links: list[str] = []
    index: dict[str, int] = {}
    kept = {html.unescape(k) for k in keep}

    def replace(match: re.Match[str]) -> str:
        assert click_url is not None
        url = html.unescape(match.group(3)).strip()
        if not url.lower().startswith(("http://", "https://")) or url in kept:
            return match.group(0)
        if url not in index:
            index[url] = len(links)
            links.append(url)
        return f"{match.group(1)}{match.group(2)}{click_url(index[url])}{match.group(2)}"

    result = _HREF.sub(replace, source) if click_url is not None else source
    if trap_url is not None:
        trap = (
            f'<a href="{trap_url}" style="display:none;font-size:0;line-height:0" '
            'aria-hidden="true" tabindex="-1"></a>'
        )
        start = _BODY_START.search(result)
        result = result[: start.end()] + trap + result[start.end() :] if start else trap + result
    if open_url is not None:
        pixel = (
            f'<img src="{open_url}" width="1" height="1" alt="" '
            'style="display:block;border:0;width:1px;height:1px">'
        )
        ends = list(_BODY_END.finditer(result))
        result = (
            result[: ends[-1].start()] + pixel + result[ends[-1].start() :]
            if ends
            else result + pixel
        )
    return Tracked(result, tuple(links))
