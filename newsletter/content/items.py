"""Content items: ``content/<kind>/<slug>.md`` parsed and validated against a schema.

Pure: ``parse_item`` takes the file's text and returns a ``ContentItem`` or raises a
``ContentError`` naming the file and the line of the offending key.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from newsletter.content.model import KINDS, ContentItem
from newsletter.content.yaml_source import YamlDocument, parse_yaml
from newsletter.errors import ContentError, ContentProblems

DEFAULT_TEMPLATES: dict[str, str] = {
    "tips": "tip",
    "testimonials": "testimonial",
    "tutorials": "tutorial",
    "campaigns": "campaign",
    "system": "system",
}
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
MAX_SUBJECT_LENGTH = 60


@dataclass(frozen=True)
class Field:
    """One allowed front-matter key."""

    type: type
    required: bool = False
    description: str = ""


FRONT_MATTER: dict[str, Field] = {
    "subject": Field(str, required=True, description="the subject line (may use Jinja)"),
    "preheader": Field(str, required=True, description="the inbox preview text"),
    "template": Field(str, description="template in templates/emails/ (default from kind)"),
    "tags": Field(list, description="list of words"),
    "medical": Field(bool, description="adds the 'not medical advice' line (default true)"),
    "transactional": Field(bool, description="system/confirmation only (default false)"),
    "example": Field(bool, description="marks a shipped example testimonial"),
    "topic": Field(str, description="topic of the preference centre (content/topics.yaml)"),
    "attributes": Field(list, description="custom fields the item reads (checked with samples)"),
    "event_properties": Field(list, description="event properties the item reads (likewise)"),
}
_TYPE_NAMES = {str: "a string", list: "a list", bool: "true or false"}


@dataclass(frozen=True)
class ItemLines:
    """Where the parts of an item were written, for ``file:line`` errors at render time."""

    body: int
    subject: int
    preheader: int


@dataclass(frozen=True)
class Source:
    """A content file split into its front matter and its Markdown body."""

    front_matter: str
    body: str
    body_line: int  # 1-based file line where the body starts


def split_front_matter(text: str, path: str) -> Source:
    """Split ``---`` front matter from the body; error if it is missing or unclosed."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ContentError(
            "missing front matter: the file must start with a '---' line, then "
            "'subject: ...' and 'preheader: ...', then another '---'",
            path,
            1,
        )
    for index in range(1, len(lines)):
        if lines[index].strip() == "---":
            return Source("".join(lines[1:index]), "".join(lines[index + 1 :]), index + 2)
    raise ContentError("front matter is not closed: add a '---' line after it", path, 1)


def parse_item(
    text: str, path: str, kind: str, slug: str, templates: Collection[str]
) -> tuple[ContentItem, ItemLines]:
    """Validate one content file; *templates* are the template names that exist."""
    if kind not in KINDS:
        raise ContentError(f"unknown content kind {kind!r}; kinds are {', '.join(KINDS)}", path)
    if not SLUG.match(slug):
        raise ContentError(
            f"bad file name {slug!r}: use lower-case letters, digits and dashes "
            "(e.g. meet-your-ql.md)",
            path,
        )
    source = split_front_matter(text, path)
    doc = parse_yaml(source.front_matter, path, line_offset=1)
    problems: list[ContentError] = []
    meta = _check_schema(doc, problems)
    template = meta.get("template", DEFAULT_TEMPLATES[kind])
    if isinstance(template, str) and template not in templates:
        known = ", ".join(sorted(templates)) or "none"
        problems.append(
            doc.error(
                f"unknown template {template!r}: no {template}.html and {template}.txt in the "
                f"templates folder (available: {known})",
                "template",
            )
        )
    transactional = meta.get("transactional", False)
    if transactional and kind != "system":
        problems.append(
            doc.error(
                "transactional: true is only for system items (the confirmation email); "
                "marketing email must carry the unsubscribe footer",
                "transactional",
            )
        )
    if problems:  # every problem of this file, in one run
        raise problems[0] if len(problems) == 1 else ContentProblems(problems)
    item = ContentItem(
        id=f"{kind}/{slug}",
        kind=kind,
        slug=slug,
        subject=meta["subject"].strip(),
        preheader=meta["preheader"].strip(),
        template=template,
        body=source.body,
        path=path,
        tags=tuple(meta.get("tags", ())),
        medical=meta.get("medical", True),
        transactional=transactional,
        example=meta.get("example", False),
        topic=(meta.get("topic") or "").strip() or None,
        attributes=_names(doc, meta, "attributes"),
        event_properties=_names(doc, meta, "event_properties"),
    )
    return item, ItemLines(source.body_line, doc.line_of("subject"), doc.line_of("preheader"))


def _check_schema(doc: YamlDocument, problems: list[ContentError]) -> dict[str, Any]:
    """The front matter's valid keys; each problem found is appended to ``problems``."""
    if doc.data is None:
        problems.append(doc.error("front matter is empty: add 'subject: ...' and 'preheader: ...'"))
        return {}
    if not isinstance(doc.data, dict):
        problems.append(doc.error("front matter must be 'key: value' lines"))
        return {}
    meta: dict[str, Any] = {}
    for key, value in doc.data.items():
        spec = FRONT_MATTER.get(str(key))
        if spec is None:
            allowed = ", ".join(FRONT_MATTER)
            problems.append(
                doc.error(f"unknown front-matter key {key!r}; allowed keys: {allowed}", key)
            )
        elif not isinstance(value, spec.type):
            problems.append(
                doc.error(f"{key} must be {_TYPE_NAMES[spec.type]}, got {_describe(value)}", key)
            )
        else:
            meta[str(key)] = value
    if "tags" in meta:
        for index, tag in enumerate(meta["tags"]):
            if not isinstance(tag, str) or not tag.strip():
                problems.append(
                    doc.error(f"tags must be words, got {_describe(tag)}", "tags", index)
                )
    for key, spec in FRONT_MATTER.items():
        if spec.required and key not in doc.data:
            problems.append(doc.error(f"missing {key}: add '{key}: ...' ({spec.description})"))
        elif spec.required and key in meta and not meta[key].strip():
            problems.append(doc.error(f"{key} is empty: write {spec.description}", key))
    return meta


_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


def _names(doc: YamlDocument, meta: dict[str, Any], key: str) -> tuple[str, ...]:
    """``attributes: [plan]``: names of custom fields (or event properties) used."""
    names = meta.get(key, [])
    for index, name in enumerate(names):
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            raise doc.error(
                f"{key} must list names (a letter or _, then letters, digits or _), got "
                f"{_describe(name)}",
                key,
                index,
            )
    return tuple(names)


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value)
    return f"{type(value).__name__} {value!r}"
