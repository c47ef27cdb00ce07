"""Personalization batching at its edges: the proof, escaping, sizes and bounds (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from markupsafe import escape

from newsletter.delivery.personalization import (
    MAX_SUBSTITUTION_BYTES,
    MIN_VALUE_LENGTH,
    group_messages,
    make_skeleton,
)
from tests.test_personalization import assert_identity, render


def jinja_render(index: int, name: str) -> object:
    """The html part as the real templates make it: Jinja/MarkupSafe autoescape."""
    email = render(index, name)
    return replace(email, html=email.html.replace(_stdlib(name), str(escape(name))))


def _stdlib(name: str) -> str:
    import html

    return html.escape(name)


def test_a_value_found_inside_an_earlier_tag_fails_the_proof_and_goes_out_alone() -> None:
    """A recipient named ``nl``: replacing it inside ``%%nl:...%%`` would corrupt the
    skeleton; the round-trip proof catches it and the email is sent unchanged, alone."""
    nl = render(1, "nl")
    assert make_skeleton(nl) is None
    others = [render(i, name) for i, name in enumerate(["Anna", "Berta"], start=2)]
    groups = group_messages([nl, *others])
    alone = [g for g in groups if g.first is nl]
    assert len(alone) == 1
    assert not alone[0].batched
    assert (alone[0].subject, alone[0].html, alone[0].text) == (nl.subject, nl.html, nl.text)
    assert_identity([nl, *others], groups)


@pytest.mark.parametrize(
    "name",
    ["O'Brien", "Tom & Jerry's", "<O'Neil>", 'Say "hi"'],
    ids=["apostrophe", "ampersand", "angle-brackets", "quotes"],
)
def test_jinja_autoescaped_names_batch_with_plain_ones(name: str) -> None:
    messages = [jinja_render(0, "Anna"), jinja_render(1, name)]
    assert str(escape(name)) in messages[1].html  # type: ignore[attr-defined]
    groups = group_messages(messages)  # type: ignore[arg-type]
    assert len(groups) == 1
    assert groups[0].batched
    assert_identity(messages, groups)  # type: ignore[arg-type]


def _with_url_length(length: int) -> object:
    base = render(0, "Anna")
    old = base.personal["unsubscribe_url"]
    url = "https://news.example/u/" + "x" * (length - len("https://news.example/u/"))
    return replace(
        base,
        html=base.html.replace(old, url),
        text=base.text.replace(old, url),
        headers={},
        personal={"first_name": "Anna", "unsubscribe_url": url},
    )


def _size(message: object) -> int:
    skeleton = make_skeleton(message)  # type: ignore[arg-type]
    assert skeleton is not None
    return sum(len(k.encode()) + len(v.encode()) for k, v in skeleton.substitutions)


def _with_value_of_size(total: int) -> object:
    """An email whose substitutions (tags plus values) take exactly ``total`` bytes."""
    small, larger = _size(_with_url_length(100)), _size(_with_url_length(101))
    per_char = larger - small  # the url is substituted in this many places
    assert (total - small) % per_char == 0, "pick a total the url length can reach"
    return _with_url_length(100 + (total - small) // per_char)


def test_substitutions_of_exactly_the_limit_batch_and_one_url_character_more_do_not() -> None:
    at_limit = _with_value_of_size(MAX_SUBSTITUTION_BYTES)
    skeleton = make_skeleton(at_limit)  # type: ignore[arg-type]
    assert skeleton is not None
    assert sum(len(k.encode()) + len(v.encode()) for k, v in skeleton.substitutions) == 10_000
    over = _with_url_length(len(at_limit.personal["unsubscribe_url"]) + 1)  # type: ignore[attr-defined]
    assert make_skeleton(over) is None  # type: ignore[arg-type]


def test_two_letter_names_are_substituted_and_one_letter_names_are_not() -> None:
    assert MIN_VALUE_LENGTH == 2
    two = make_skeleton(render(0, "Jo"))
    assert two is not None
    assert ("%%nl:first_name%%", "Jo") in two.substitutions
    one = make_skeleton(render(1, "J"))
    assert one is not None  # the url is still substituted
    assert all(tag != "%%nl:first_name%%" for tag, _ in one.substitutions)


@pytest.mark.parametrize("bad", [0, -1, 1001], ids=["zero", "negative", "over-1000"])
def test_max_recipients_out_of_range_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match=r"max_recipients must be 1\.\.1000"):
        group_messages([render(0, "Anna")], max_recipients=bad)


def test_max_recipients_one_and_1000_are_accepted() -> None:
    messages = [render(i, f"Name{i:03d}x") for i in range(3)]
    assert [len(g.recipients) for g in group_messages(messages, max_recipients=1)] == [1, 1, 1]
    assert [len(g.recipients) for g in group_messages(messages, max_recipients=1000)] == [3]


def test_a_group_of_one_is_never_batched() -> None:
    """A lone email goes out with its own content and no substitutions."""
    (group,) = group_messages([render(0, "Anna")])
    assert not group.batched
    assert group.recipients[0].substitutions == ()
    assert group.subject == "Meet your QL, Anna"


def test_percent_signs_in_a_value_or_double_percent_in_content_go_out_alone() -> None:
    assert make_skeleton(render(0, "100%")) is None
    assert make_skeleton(render(1, "Anna", subject="50%% off, {first_name}")) is None
    odd_key = replace(render(2, "Anna"), personal={"first-name": "Anna"})
    assert make_skeleton(odd_key) is None
    assert make_skeleton(replace(render(3, "Anna"), personal={})) is None
