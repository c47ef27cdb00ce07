"""Grouping rendered emails into SendGrid personalizations (pure)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.delivery.base import OutgoingEmail, Skeleton
from newsletter.delivery.personalization import (
    MAX_RECIPIENTS,
    MailGroup,
    apply_substitutions,
    group_messages,
    make_skeleton,
    singles,
)

SUBJECT = "Meet your QL, {first_name}"
HTML = '<p>Hi {first_name_html},</p><p>20% off.</p><a href="{unsubscribe_url}">Unsubscribe</a>'
TEXT = "Hi {first_name},\n20% off.\nUnsubscribe: {unsubscribe_url}\n"


def render(
    index: int,
    first_name: str,
    *,
    subject: str = SUBJECT,
    html_template: str = HTML,
    text: str = TEXT,
    **overrides: Any,
) -> OutgoingEmail:
    """An email rendered for one recipient, the way the composer does it."""
    url = f"https://news.example/unsubscribe/tok{index:06d}?d={index}"  # as dispatch builds it
    values = {
        "first_name": first_name,
        "first_name_html": html.escape(first_name),
        "unsubscribe_url": url,
    }
    email = OutgoingEmail(
        delivery_id=index,
        to_email=f"reader{index}@example.com",
        subject=subject.format(**values),
        html=html_template.format(**values),
        text=text.format(**values),
        from_email="tips@shop.example",
        from_name="Shop",
        headers={
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        categories=("tips",),
        personal={"first_name": first_name, "unsubscribe_url": url},
    )
    return replace(email, **overrides)


def restored(group: MailGroup, index: int) -> tuple[str, str, str]:
    """What SendGrid shows recipient ``index`` of ``group``."""
    subs: Mapping[str, str] = dict(group.recipients[index].substitutions)
    return (
        apply_substitutions(group.subject, subs),
        apply_substitutions(group.html, subs),
        apply_substitutions(group.text, subs),
    )


def assert_identity(messages: list[OutgoingEmail], groups: list[MailGroup]) -> None:
    seen = sorted(r.index for g in groups for r in g.recipients)
    assert seen == list(range(len(messages)))
    for group in groups:
        assert len(group.recipients) <= MAX_RECIPIENTS
        for position, recipient in enumerate(group.recipients):
            message = messages[recipient.index]
            assert recipient.message is message
            assert restored(group, position) == (message.subject, message.html, message.text)


def test_same_content_different_names_share_one_group() -> None:
    """Emails differing only in first name and unsubscribe URL go out as one request."""
    messages = [render(i, name) for i, name in enumerate(["Anna", "Bob", "Chloé", "Dmitri"])]
    groups = group_messages(messages)
    assert len(groups) == 1
    assert groups[0].batched
    assert "%%nl:first_name%%" in groups[0].subject
    assert "Anna" not in groups[0].html
    assert_identity(messages, groups)


@pytest.mark.parametrize(
    ("names", "expected_groups"),
    [
        pytest.param(["Anna", "Bob"], 1, id="plain-names"),
        pytest.param(["O'Brien", "Smith & Co", "Anna"], 1, id="html-escaped-names"),
        pytest.param(["Al", "Bo"], 2, id="value-inside-a-word-of-the-content"),
        pytest.param(["Q", "Anna", "Bob"], 2, id="one-letter-name-goes-alone"),
        pytest.param(["Anna", "Anna"], 1, id="same-name-twice"),
        pytest.param(["50%", "Anna"], 2, id="percent-in-value-goes-alone"),
        pytest.param(["", "Anna", "Bob"], 2, id="empty-name-goes-alone"),
    ],
)
def test_grouping_table(names: list[str], expected_groups: int) -> None:
    """Whatever the values, each recipient gets exactly its own email back."""
    text = "Hi {first_name},\nAlso: 20% off.\nUnsubscribe: {unsubscribe_url}\n"
    messages = [render(i, n, text=text) for i, n in enumerate(names)]
    groups = group_messages(messages)
    assert len(groups) == expected_groups
    assert_identity(messages, groups)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        pytest.param({"from_email": "other@shop.example"}, "sender", id="sender"),
        pytest.param({"from_name": "Other"}, "sender name", id="sender-name"),
        pytest.param({"reply_to": "help@shop.example"}, "reply-to", id="reply-to"),
        pytest.param({"categories": ("campaign",)}, "categories", id="categories"),
        pytest.param({"subject": "Another subject"}, "content", id="subject"),
    ],
)
def test_envelope_or_content_difference_splits(change: dict[str, Any], why: str) -> None:
    """Emails that differ in more than per-recipient values never share a request."""
    messages = [render(0, "Anna"), render(1, "Bob", **change)]
    groups = group_messages(messages)
    assert len(groups) == 2, why
    assert_identity(messages, groups)


@pytest.mark.parametrize(
    "email",
    [
        pytest.param(render(0, "Anna", personal={}), id="no-personal-values"),
        pytest.param(render(0, "Anna", text="Use %%nl:first_name%% here"), id="tag-in-content"),
        pytest.param(render(0, "Anna", text="100%% sure, {first_name}"), id="double-percent"),
        pytest.param(render(0, "Anna", personal={"first name": "Anna"}), id="key-not-a-word"),
        pytest.param(render(0, "Anna", personal={"first_name": "Zed"}), id="value-not-in-content"),
        pytest.param(
            render(0, "Anna", personal={"first_name": "Anna", "bio": "x" * 10_001}),
            id="substitutions-too-large",
        ),
    ],
)
def test_unbatchable_email_has_no_skeleton(email: OutgoingEmail) -> None:
    """Emails we cannot prove safe to batch get no skeleton and go out alone."""
    if email.personal.get("bio"):
        email = replace(email, text=email.text + email.personal["bio"])
    assert make_skeleton(email) is None
    messages = [email, render(1, "Bob")]
    groups = group_messages(messages)
    assert all(not g.batched for g in groups if g.recipients[0].index == 0)
    assert_identity(messages, groups)


def test_more_than_1000_recipients_split_in_order() -> None:
    """2,500 identical-skeleton emails become requests of 1000, 1000 and 500."""
    messages = [render(i, f"Reader{i:05d}") for i in range(2500)]
    groups = group_messages(messages)
    assert [len(g.recipients) for g in groups] == [1000, 1000, 500]
    assert [r.index for g in groups for r in g.recipients] == list(range(2500))
    assert_identity(messages, groups)


def test_max_recipients_bounds() -> None:
    with pytest.raises(ValueError, match="max_recipients"):
        group_messages([], max_recipients=1001)
    assert group_messages([]) == []


def test_singles_keep_content_and_order() -> None:
    messages = [render(i, "Anna") for i in range(3)]
    groups = singles(messages)
    assert [g.recipients[0].index for g in groups] == [0, 1, 2]
    assert not any(g.batched for g in groups)
    assert_identity(messages, groups)


def test_apply_substitutions_is_single_pass() -> None:
    """A value that looks like another tag is not substituted again."""
    subs = {"%%nl:a%%": "%%nl:b%%", "%%nl:b%%": "B"}
    assert apply_substitutions("%%nl:a%% %%nl:b%% %%nl:c%%", subs) == "%%nl:b%% B %%nl:c%%"


names = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(names, min_size=1, max_size=6))
def test_any_names_round_trip(first_names: list[str]) -> None:
    """For arbitrary names, batching never changes what a recipient receives."""
    messages = [render(i, n) for i, n in enumerate(first_names)]
    assert_identity(messages, group_messages(messages))


# ---- skeletons that come with the email (a batch render plan) ---------------------------


def _with_skeleton(index: int, first_name: str, **changes: Any) -> OutgoingEmail:
    """``render`` with the skeleton a render plan attaches."""
    email = render(index, first_name)
    url = email.personal["unsubscribe_url"]
    subs = {
        "%%nl:first_name%%": first_name,
        "%%nl:first_name:h%%": html.escape(first_name),
        "%%nl:unsubscribe_url%%": url,
    }
    skeleton = Skeleton(
        SUBJECT.format(first_name="%%nl:first_name%%"),
        HTML.format(
            first_name_html="%%nl:first_name:h%%", unsubscribe_url="%%nl:unsubscribe_url%%"
        ),
        TEXT.format(first_name="%%nl:first_name%%", unsubscribe_url="%%nl:unsubscribe_url%%"),
        tuple(sorted({**subs, **changes}.items())),
    )
    return replace(email, skeleton=skeleton)


def test_a_provided_skeleton_is_used_as_it_is() -> None:
    messages = [_with_skeleton(i, name) for i, name in enumerate(["Anna", "O'Brien", "Al"])]
    [group] = group_messages(messages)
    assert len(group.recipients) == 3
    for recipient in group.recipients:
        subs = dict(recipient.substitutions)
        assert subs == dict(recipient.message.skeleton.substitutions)  # type: ignore[union-attr]
        assert apply_substitutions(group.subject, subs) == recipient.message.subject
        assert apply_substitutions(group.html, subs) == recipient.message.html
        assert apply_substitutions(group.text, subs) == recipient.message.text


@pytest.mark.parametrize(
    "changes",
    [
        {"%%nl:first_name%%": "50%"},  # a "%" could make a tag at SendGrid
        {"%%nl:bad key%%": "x"},  # not a tag
        {"%%nl:first_name%%": "x" * 10_001},  # over SendGrid's 10,000 bytes
    ],
)
def test_a_provided_skeleton_breaking_the_rules_is_not_used(changes: dict[str, str]) -> None:
    messages = [_with_skeleton(i, "Anna", **changes) for i in range(2)]
    for group in group_messages(messages):
        for recipient in group.recipients:
            assert dict(recipient.substitutions) != {**dict(recipient.substitutions), **changes}


def test_an_empty_provided_skeleton_falls_back_to_the_search() -> None:
    messages = [
        replace(render(i, name), skeleton=Skeleton("s", "h", "t", ()))
        for i, name in enumerate(["Anna", "Bea"])
    ]
    assert [len(g.recipients) for g in group_messages(messages)] == [2]
    assert group_messages(messages) == group_messages([render(0, "Anna"), render(1, "Bea")])


@pytest.mark.parametrize(("extra", "used"), [(0, True), (1, False)])
def test_a_provided_skeleton_may_fill_sendgrids_limit_exactly(extra: int, used: bool) -> None:
    """10,000 bytes of substitutions (tags and values) are allowed, one more is not."""
    tag = "%%nl:zz%%"
    messages = []
    for index in range(2):
        value = str(index) * (10_000 - len(tag) + extra)
        email = replace(render(index, "Anna"), subject="s", html="h", text=f"x{value}y")
        skeleton = Skeleton("s", "h", f"x{tag}y", ((tag, value),))
        messages.append(replace(email, skeleton=skeleton))
    tags = {t for g in group_messages(messages) for r in g.recipients for t, _ in r.substitutions}
    assert (tag in tags) is used
