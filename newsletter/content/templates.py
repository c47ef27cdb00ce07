"""The Jinja environment for email templates in ``templates/emails/``.

Every ``.html`` template is served with its CSS already inlined (once, at first load); items
are served as generated child templates (``{% extends "tip.html" %}`` + their body). Compiled
templates are cached for the life of the environment, so a render is one Jinja call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import jinja2

from newsletter.content import inlining
from newsletter.content.inlining import LineMap
from newsletter.errors import ContentError

_EXTENDS = re.compile(r"""\{%-?\s*extends\s+["']([^"']+)["']""")
ITEM_PREFIX = "__item__/"


class EmailLoader(jinja2.BaseLoader):
    """Serves template files (HTML with CSS inlined) and generated item templates."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.generated: dict[str, tuple[str, str, LineMap]] = {}
        self.line_maps: dict[str, LineMap] = {}  # filename -> map, for error locations
        self._css: dict[str, str] = {}

    def add(self, name: str, source: str, filename: str, line_map: LineMap) -> None:
        self.generated[name] = (source, filename, line_map)

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        if template in self.generated:
            source, filename, _ = self.generated[template]
            return source, filename, _always_fresh
        path = self._path(template)
        text = self.read(template)
        filename = str(path)
        _parse(environment, text, template, filename)
        if template.endswith(".html"):
            text, line_map = inlining.inline(
                text, path=filename, css=self.inherited_css(template, include_own=False)
            )
            self.line_maps[filename] = line_map
        return text, filename, _always_fresh

    def read(self, template: str) -> str:
        path = self._path(template)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise jinja2.TemplateNotFound(template) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ContentError(f"cannot read template: {exc}", str(path)) from None

    def inherited_css(self, template: str, *, include_own: bool = True) -> str:
        """CSS of *template*'s layout chain (for fragments: the ``<style>`` of the layout)."""
        key = f"{template}|{include_own}"
        if key not in self._css:
            source = self.read(template)
            parent = _EXTENDS.search(source)
            inherited = self.inherited_css(parent.group(1)) if parent else ""
            own = inlining.stylesheet(source) if include_own else ""
            self._css[key] = "\n".join(part for part in (inherited, own) if part)
        return self._css[key]

    def _path(self, template: str) -> Path:
        parts = template.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise jinja2.TemplateNotFound(template)
        return self.templates_dir.joinpath(*parts)


def _always_fresh() -> bool:
    return True


def _parse(environment: jinja2.Environment, text: str, name: str, filename: str) -> None:
    """Surface syntax errors with the author's line numbers, before inlining moves lines."""
    try:
        environment.parse(text, name, filename)
    except jinja2.TemplateSyntaxError as exc:
        raise ContentError(f"template syntax error: {exc.message}", filename, exc.lineno) from None


def make_environment(templates_dir: Path) -> tuple[jinja2.Environment, EmailLoader]:
    """An environment with ``StrictUndefined``, autoescaped ``.html`` and a permanent cache."""
    loader = EmailLoader(templates_dir)
    environment = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=-1,
    )
    return environment, loader


def template_names(templates_dir: Path) -> list[str]:
    """Names usable as ``template:``: every ``<name>.html`` with a ``<name>.txt`` partner."""
    if not templates_dir.is_dir():
        return []
    html = {path.stem for path in templates_dir.glob("*.html")}
    text = {path.stem for path in templates_dir.glob("*.txt")}
    return sorted(html & text)


def check_templates(templates_dir: Path) -> list[ContentError]:
    """Problems with the template files themselves: missing partners, syntax, inlining."""
    if not templates_dir.is_dir():
        return [
            ContentError(
                "templates folder not found; set NEWSLETTER_TEMPLATES_DIR or run from the "
                "project root",
                str(templates_dir),
            )
        ]
    problems: list[ContentError] = []
    environment, _ = make_environment(templates_dir)
    for path in sorted([*templates_dir.glob("*.html"), *templates_dir.glob("*.txt")]):
        partner = path.with_suffix(".txt" if path.suffix == ".html" else ".html")
        if not partner.exists():
            problems.append(
                ContentError(
                    f"{path.name} has no partner {partner.name}: every email needs an HTML "
                    "and a plain-text part",
                    str(path),
                )
            )
        try:
            environment.get_template(path.name)
        except ContentError as exc:
            problems.append(exc)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(
                ContentError(f"template syntax error: {exc.message}", exc.filename, exc.lineno)
            )
        except jinja2.TemplateNotFound as exc:
            problems.append(ContentError(f"template {exc.name!r} not found", str(path)))
    return problems
