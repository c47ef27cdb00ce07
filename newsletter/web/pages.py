"""Small HTML pages shown to people (confirm, unsubscribe, thank you, errors)."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

_env = Environment(
    loader=PackageLoader("newsletter.web", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
)
_page = _env.get_template("page.html")


def page(
    title: str,
    message: str,
    *,
    status: int = 200,
    action: str | None = None,
    button: str = "",
    ask_again: bool = False,
) -> HTMLResponse:
    html = _page.render(
        title=title, message=message, action=action, button=button, ask_again=ask_again
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
