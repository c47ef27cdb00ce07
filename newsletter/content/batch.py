"""Render once per group of recipients, then substitute each one's values (pure).

A batch of a thousand emails of one item differs only in a few per-recipient values:
the address, the first name and the links. Rendering every email alone costs a Jinja run
per recipient; a ``RenderPlan`` renders the item once with a *sentinel* in place of each
such value and records where, and escaped how many times, each sentinel landed. Each
recipient's email is then the plan with its own values put back, escaped the same way.

That equals rendering the email alone when:

1. **The templates treat the values as opaque** (``opaque_item``, a static check of the
   Jinja syntax trees of the item and every template it reaches): a per-recipient value
   (``subscriber.email``, ``subscriber.first_name``, ``links.unsubscribe/confirm/keep/
   preferences``, and ``subject``/``preheader``, which may hold them) is only printed
   (``{{ x }}``, ``{{ x or "there" }}``, ``{{ a if x else b }}``) or tested for truth
   (``{% if x %}``, ``not x``), outside macros, call, filter and set blocks. Any other use
   (a filter, a comparison, ``~``, an attribute, ``self``/``super``) makes the item
   unplannable: every email of it is rendered alone.
2. **The truth of each value is the same as the sentinel's**: recipients are grouped by
   every input except the non-empty per-recipient values (``group_key``); an empty value
   is rendered as itself.
3. **Each value survives the subject's whitespace folding** and cannot be confused with
   a sentinel or a substitution tag (``usable``): otherwise that recipient is rendered
   alone.

The sentinel holds ``&`` and lowercase letters, so each escaping shows (``&amp;``,
``&amp;amp;``) and a case change would leave a stray marker, which refuses the plan. The
dispatcher also renders one recipient of every group alone and refuses the plan unless
it gives exactly that email (``tests/test_batch_render.py`` proves the equality for every
shipped item and for generated names).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import jinja2
from jinja2 import meta, nodes
from markupsafe import escape

from newsletter.content.model import EventContext, Links, RenderedEmail, SubscriberContext
from newsletter.delivery.personalization import TAG_PATTERN, tag_for

# (context object, attribute) -> the name of the value in ``OutgoingEmail.personal``.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("subscriber", "email", "email"),
    ("subscriber", "first_name", "first_name"),
    ("links", "unsubscribe", "unsubscribe_url"),
    ("links", "confirm", "confirm_url"),
    ("links", "keep", "keep_url"),
    ("links", "preferences", "preferences_url"),
)
_PERSONAL = {
    owner: frozenset(attr for o, attr, _ in FIELDS if o == owner) for owner, _, _ in FIELDS
}
# Context variables rendered from per-recipient values (the subject may hold the name).
_DERIVED = frozenset({"subject", "preheader"})
# Names that reach rendered output or the context in ways the check cannot follow.
_FORBIDDEN = frozenset({"self", "super", "caller", "varargs", "kwargs", "context"})
_VARIANTS = ("", "h", "hh")  # tag variants by the number of times a value was escaped

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters: never in shipped content
_SENTINEL = re.compile("\ue000nl([0-9]+)&((?:amp;)*)\ue001")
_PRINT, _TEST, _OTHER = "print", "test", "other"
_ANY_TAG = re.compile(f"({TAG_PATTERN})")


def sentinel(index: int) -> str:
    return f"{_OPEN}nl{index}&{_CLOSE}"


def usable(value: str) -> bool:
    """Whether ``value`` may be substituted into a plan (else: render that email alone).

    Non-empty; no ``%`` (SendGrid substitutes tag by tag: a value must not make a tag);
    no sentinel character; and unchanged by the whitespace folding of subjects
    (``" ".join(v.split())``), so folding around the value equals folding around the
    sentinel.
    """
    return (
        bool(value)
        and "%" not in value
        and _OPEN not in value
        and _CLOSE not in value
        and " ".join(value.split()) == value
    )


# ---- the static check ----------------------------------------------------------------


def opaque(template: nodes.Template) -> bool:
    """Whether ``template`` only prints or truth-tests per-recipient values."""
    return all(_opaque(child, None, False) for child in template.body)


def _opaque(node: nodes.Node, role: str | None, captured: bool) -> bool:
    value_role = role if role in (_PRINT, _TEST) else _OTHER
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        owner = node.node.name
        if owner in _PERSONAL:
            if node.attr in _PERSONAL[owner]:
                return _allowed(role, captured)
            return True  # the same for the whole group (timezone, tags, attributes ...)
    if isinstance(node, nodes.Name):
        if node.name in _PERSONAL or node.name in _FORBIDDEN:
            return False
        if node.name in _DERIVED:
            return _allowed(role, captured)
        return True
    if isinstance(node, nodes.Output):
        return all(_opaque(child, _PRINT, captured) for child in node.nodes)
    if isinstance(node, nodes.If):
        return (
            _opaque(node.test, _TEST, captured)
            and all(_opaque(s, None, captured) for s in node.body)
            and all(_opaque(s, None, captured) for s in node.elif_)
            and all(_opaque(s, None, captured) for s in node.else_)
        )
    if isinstance(node, nodes.CondExpr):
        branches = [node.expr1] + ([node.expr2] if node.expr2 is not None else [])
        return _opaque(node.test, _TEST, captured) and all(
            _opaque(b, value_role, captured) for b in branches
        )
    if isinstance(node, (nodes.Or, nodes.And)):
        return _opaque(node.left, value_role, captured) and _opaque(
            node.right, value_role, captured
        )
    if isinstance(node, nodes.Not):
        return _opaque(node.node, _TEST, captured)
    if isinstance(node, (nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock)):
        captured = True  # their output is a value the template may transform
    return all(
        _opaque(child, _OTHER if isinstance(child, nodes.Expr) else None, captured)
        for child in node.iter_child_nodes()
    )


def _allowed(role: str | None, captured: bool) -> bool:
    return role == _TEST or (role == _PRINT and not captured)


def reachable_templates(environment: jinja2.Environment, names: list[str]) -> Iterator[str]:
    """The names of ``names`` and every template they extend, include or import.

    Raises ``LookupError`` when a template is chosen at render time (a dynamic name).
    """
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        yield name
        for found in meta.find_referenced_templates(_parse_named(environment, name)):
            if found is None:
                raise LookupError(f"{name} names a template at render time")
            todo.append(found)


def _parse_named(environment: jinja2.Environment, name: str) -> nodes.Template:
    assert environment.loader is not None
    source = environment.loader.get_source(environment, name)[0]
    return environment.parse(source, name)


def opaque_item(
    environment: jinja2.Environment, subject: str, preheader: str, templates: list[str]
) -> bool:
    """Whether an item (its subject and preheader sources and its body templates, with
    everything they reach) treats per-recipient values as opaque."""
    try:
        trees = [environment.parse(subject), environment.parse(preheader)]
        trees += [_parse_named(environment, n) for n in reachable_templates(environment, templates)]
    except (LookupError, jinja2.TemplateError):
        return False
    return all(opaque(tree) for tree in trees)


# ---- the plan ------------------------------------------------------------------------


def probe_inputs(
    subscriber: SubscriberContext, links: Links
) -> tuple[SubscriberContext, Links, tuple[str, ...]]:
    """The inputs with each non-empty per-recipient value replaced by a sentinel, and the
    personal names of the replaced values, by sentinel index."""
    replaced: dict[str, dict[str, Any]] = {"subscriber": {}, "links": {}}
    names: list[str] = []
    for owner, attr, name in FIELDS:
        value = getattr(subscriber if owner == "subscriber" else links, attr)
        if value:
            replaced[owner][attr] = sentinel(len(names))
            names.append(name)
    return (
        replace(subscriber, **replaced["subscriber"]),
        replace(links, **replaced["links"]),
        tuple(names),
    )


def recipient_values(subscriber: SubscriberContext, links: Links) -> dict[str, str]:
    """The non-empty per-recipient values by personal name (what a plan substitutes)."""
    values: dict[str, str] = {}
    for owner, attr, name in FIELDS:
        value = getattr(subscriber if owner == "subscriber" else links, attr)
        if value:
            values[name] = value
    return values


def group_key(
    item_id: str, subscriber: SubscriberContext, links: Links, event: EventContext
) -> tuple[object, ...]:
    """Recipients with equal keys can share one plan: every input but the non-empty
    per-recipient values is the same (every field of both contexts, so a field added
    later is part of the key). An empty value stands for itself (``None`` and ``""``
    print differently); ``repr`` tells apart what equality would not (1 and True)."""
    key: list[object] = [item_id, repr(event)]
    for owner, context in (("subscriber", subscriber), ("links", links)):
        personal = _PERSONAL[owner]
        for name in _FIELD_NAMES[owner]:
            value = getattr(context, name)
            key.append(True if value and name in personal else repr(value))
    return tuple(key)


_FIELD_NAMES = {
    "subscriber": tuple(f.name for f in fields(SubscriberContext)),
    "links": tuple(f.name for f in fields(Links)),
}


@dataclass(frozen=True)
class RenderPlan:
    """One rendering of an item with SendGrid-style tags where per-recipient values go.

    ``tags`` maps each tag used to (personal name, times escaped).
    """

    item_id: str
    subject: str
    preheader: str
    html: str
    text: str
    transactional: bool
    tags: Mapping[str, tuple[str, int]]

    def substitutions(self, values: Mapping[str, str]) -> dict[str, str] | None:
        """Tag -> text for one recipient; ``None`` if a value is missing or unusable."""
        out: dict[str, str] = {}
        # Each value checked once and escaped once per level, however many tags use it
        # (a name is often in the text as it is and in the html escaped).
        forms: dict[str, list[str]] = {}
        for tag, (name, depth) in self.tags.items():
            chain = forms.get(name)
            if chain is None:
                value = values.get(name)
                if value is None or not usable(value):
                    return None
                chain = forms[name] = [value]
            while len(chain) <= depth:
                chain.append(str(escape(chain[-1])))
            out[tag] = chain[depth]
        return out

    def render(self, substitutions: Mapping[str, str]) -> RenderedEmail:
        """The email for one recipient: ``apply_substitutions`` on every part (written
        as joins of the parts split at their tags once: the same text, faster)."""
        subject, preheader, html, text = (_joined(pieces, substitutions) for pieces in self._pieces)
        return RenderedEmail(self.item_id, subject, preheader, html, text, self.transactional)

    @functools.cached_property
    def _pieces(self) -> tuple[tuple[str, ...], ...]:
        """Each part split at its tags: text, tag, text, tag, ..., text."""
        return tuple(
            tuple(_ANY_TAG.split(part))
            for part in (self.subject, self.preheader, self.html, self.text)
        )


def _joined(pieces: tuple[str, ...], substitutions: Mapping[str, str]) -> str:
    if len(pieces) == 1:
        return pieces[0]
    out = list(pieces)
    for index in range(1, len(out), 2):
        out[index] = substitutions.get(out[index], out[index])
    return "".join(out)


def make_plan(probe: RenderedEmail, names: tuple[str, ...]) -> RenderPlan | None:
    """The plan from an email rendered with sentinels (``probe_inputs``), or ``None``
    when a sentinel came out in a form substitution cannot reproduce."""
    tags: dict[str, tuple[str, int]] = {}

    def tag(match: re.Match[str]) -> str:
        index, depth = int(match.group(1)), match.group(2).count("amp;")
        if index >= len(names) or depth >= len(_VARIANTS):
            raise ValueError("unknown sentinel")
        name = names[index]
        found = tag_for(name, _VARIANTS[depth])
        tags[found] = (name, depth)
        return found

    parts = (probe.subject, probe.preheader, probe.html, probe.text)
    out: list[str] = []
    for part in parts:
        # "%%" in the content would make tags ambiguous (as ``make_skeleton`` refuses it).
        if "%%" in part:
            return None
        try:
            tagged = _SENTINEL.sub(tag, part)
        except ValueError:
            return None
        if _OPEN in tagged or _CLOSE in tagged:  # a sentinel changed by the template
            return None
        out.append(tagged)
    subject, preheader, html, text = out
    return RenderPlan(probe.item_id, subject, preheader, html, text, probe.transactional, tags)
