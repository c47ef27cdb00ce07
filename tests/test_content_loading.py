"""Parsing content files and sequences (pure): schema, defaults and file:line errors."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from newsletter.content.items import parse_item
from newsletter.content.model import ContentItem, Rotation, SendWindow
from newsletter.content.sequences import parse_delay, parse_sequence, parse_window
from newsletter.errors import ContentError

TEMPLATES = ("campaign", "system", "testimonial", "tip", "tutorial")


def item(text: str, kind: str = "tips", slug: str = "x") -> ContentItem:
    return parse_item(text, f"content/{kind}/{slug}.md", kind, slug, TEMPLATES)[0]


@pytest.mark.parametrize(
    ("kind", "template"),
    [
        ("tips", "tip"),
        ("testimonials", "testimonial"),
        ("tutorials", "tutorial"),
        ("campaigns", "campaign"),
        ("system", "system"),
    ],
)
def test_template_defaults_from_the_kind(kind: str, template: str) -> None:
    parsed = item("---\nsubject: S\npreheader: P\n---\nBody\n", kind=kind)
    assert parsed.template == template
    assert parsed.id == f"{kind}/x"
    assert (parsed.medical, parsed.transactional, parsed.example, parsed.tags) == (
        True,
        False,
        False,
        (),
    )
    assert parsed.body == "Body\n"


def test_every_field_is_read() -> None:
    parsed = item(
        "---\nsubject: S\npreheader: P\ntemplate: tutorial\ntags: [a, b]\nmedical: false\n"
        "example: true\n---\nBody\n",
        kind="testimonials",
    )
    assert (parsed.template, parsed.tags, parsed.medical, parsed.example) == (
        "tutorial",
        ("a", "b"),
        False,
        True,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Body only\n", ":1: missing front matter", id="no-front-matter"),
        pytest.param("---\nsubject: S\n", ":1: front matter is not closed", id="unclosed"),
        pytest.param("---\n---\nBody\n", ":2: front matter is empty", id="empty"),
        pytest.param("---\n- a\n---\n", ":2: front matter must be 'key: value' lines", id="list"),
        pytest.param(
            "---\nsubject: 12\npreheader: P\n---\n",
            ":2: subject must be a string, got int 12",
            id="subject-type",
        ),
        pytest.param(
            "---\nsubject: S\npreheader: P\nmedical: maybe\n---\n",
            ":4: medical must be true or false, got 'maybe'",
            id="medical-type",
        ),
        pytest.param(
            "---\nsubject: S\npreheader: P\ntags: ql\n---\n",
            ":4: tags must be a list, got 'ql'",
            id="tags-type",
        ),
        pytest.param(
            "---\nsubject: S\npreheader: P\ntags:\n  - ok\n  - [nested]\n---\n",
            ":6: tags must be words",
            id="tag-type",
        ),
        pytest.param(
            "---\nsubject: S\npreheader: ''\n---\n", ":3: preheader is empty", id="empty-preheader"
        ),
        pytest.param(
            "---\nsubject: S\npreheader: P\ntransactional: true\n---\n",
            ":4: transactional: true is only for system items",
            id="transactional-tip",
        ),
        pytest.param(
            "---\nsubject: S\nsubject: T\npreheader: P\n---\n",
            ":3: duplicate key 'subject'",
            id="duplicate",
        ),
    ],
)
def test_item_errors_name_the_line(text: str, expected: str) -> None:
    with pytest.raises(ContentError) as caught:
        item(text)
    assert str(caught.value).startswith("content/tips/x.md" + expected)


def test_bad_file_names_are_refused() -> None:
    with pytest.raises(ContentError, match="bad file name 'Meet Your QL'"):
        item("---\nsubject: S\npreheader: P\n---\n", slug="Meet Your QL")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0d", timedelta(0)),
        ("3d", timedelta(days=3)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("1d12h", timedelta(days=1, hours=12)),
    ],
)
def test_delays(raw: str, expected: timedelta) -> None:
    assert parse_delay(raw) == expected


@pytest.mark.parametrize("raw", ["3", 3, "3 days", "-1d", "1w", "", None, True, "d"])
def test_bad_delays(raw: object) -> None:
    with pytest.raises(ValueError, match="bad delay"):
        parse_delay(raw)


def test_window() -> None:
    assert parse_window("08:00-11:30") == SendWindow(time(8), time(11, 30))


@pytest.mark.parametrize("raw", ["8-11", "08:00-24:00", "11:00-08:00", "09:00-09:00", 800])
def test_bad_windows(raw: object) -> None:
    with pytest.raises(ValueError, match="bad send_window"):
        parse_window(raw)


ITEMS = {
    "system/welcome": item("---\nsubject: W\npreheader: P\n---\n", kind="system", slug="welcome"),
    "system/confirmation": item(
        "---\nsubject: C\npreheader: P\ntransactional: true\n---\n",
        kind="system",
        slug="confirmation",
    ),
    "tips/a": item("---\nsubject: A\npreheader: P\n---\n", slug="a"),
}
GOOD = (
    "name: basics\nenroll: on_confirm\nsend_window: '08:00-11:00'\nsteps:\n"
    "  - send: system/welcome\n    after: 0d\n  - send: tips/a\n    after: 2d\n"
    "then:\n  every: 4d\n  from: [tips, testimonials]\n"
)


def test_a_sequence_is_read() -> None:
    sequence = parse_sequence(GOOD, "s.yaml", "basics", ITEMS)
    assert sequence.name == "basics"
    assert sequence.enroll == "on_confirm"
    assert [(s.item_id, s.after.days) for s in sequence.steps] == [
        ("system/welcome", 0),
        ("tips/a", 2),
    ]
    assert sequence.then == Rotation(timedelta(days=4), ("tips", "testimonials"))
    assert sequence.path == "s.yaml"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param("name: basics", "name: other", ":1: name 'other' does not match", id="name"),
        pytest.param(
            "on_confirm",
            "always",
            ":2: enroll must be on_confirm, manual or a mapping",
            id="enroll",
        ),
        pytest.param("send: tips/a", "send: tips/b", ":7: step 2 sends 'tips/b'", id="missing"),
        pytest.param(
            "send: tips/a", "send: system/confirmation", ":7: step 2 sends", id="transactional"
        ),
        pytest.param("after: 2d", "after: soon", ":8: bad delay 'soon'", id="delay"),
        pytest.param("    after: 2d\n", "", ":7: step 2 is missing 'after:'", id="no-after"),
        pytest.param(
            "after: 2d", "after: 2d\n    wait: 1", ":9: unknown key 'wait'", id="step-key"
        ),
        pytest.param("every: 4d", "every: 0d", ":10: then.every must be longer", id="every-zero"),
        pytest.param(
            "[tips, testimonials]", "[tips, system]", ":11: then.from: 'system'", id="kind"
        ),
        pytest.param("'08:00-11:00'", "'8am-11am'", ":3: bad send_window '8am-11am'", id="window"),
    ],
)
def test_sequence_errors_name_the_line(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    with pytest.raises(ContentError) as caught:
        parse_sequence(GOOD.replace(old, new), "s.yaml", "basics", ITEMS)
    assert str(caught.value).startswith("s.yaml" + expected)
