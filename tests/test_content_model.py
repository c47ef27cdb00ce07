"""The content library's values: their defaults and how a sequence's triggers read (pure)."""

from __future__ import annotations

from datetime import time

import pytest

from newsletter.content.model import (
    ContentItem,
    RenderedEmail,
    SendWindow,
    Sequence,
    Triggers,
)


def test_an_item_without_flags_is_medical_marketing_and_real() -> None:
    item = ContentItem(
        id="tips/posture",
        kind="tips",
        slug="posture",
        subject="Posture",
        preheader="",
        template="tip",
        body="Sit up.",
        path="content/tips/posture.md",
    )
    assert (item.medical, item.transactional, item.example) == (True, False, False)
    assert (item.topic, item.tags, item.attributes, item.event_properties) == (None, (), (), ())


def test_a_rendered_email_is_marketing_unless_told() -> None:
    assert RenderedEmail("tips/posture", "S", "P", "<p>h</p>", "t").transactional is False


def test_a_sequence_has_normal_priority_and_manual_enrolment_unless_told() -> None:
    sequence = Sequence(
        name="welcome",
        description="",
        enroll="manual",
        send_window=SendWindow(time(8), time(11)),
        steps=(),
    )
    assert sequence.priority == 2
    assert sequence.triggers == Triggers(
        on_confirm=False, on_tags=(), on_events=(), exit_tags=(), exit_events=(), reenroll=False
    )
    assert (sequence.triggers.on_confirm, sequence.triggers.reenroll) == (False, False)


@pytest.mark.parametrize(
    ("triggers", "enroll", "exit_"),
    [
        pytest.param(Triggers(), "manual", "", id="nothing"),
        pytest.param(Triggers(on_confirm=True), "on_confirm", "", id="confirm"),
        pytest.param(
            Triggers(on_tags=("back", "desk")), "on_tag: back, on_tag: desk", "", id="tags"
        ),
        pytest.param(Triggers(on_events=("purchase",)), "on_event: purchase", "", id="event"),
        pytest.param(
            Triggers(
                on_confirm=True,
                on_tags=("back",),
                on_events=("purchase", "refund"),
                exit_tags=("customer",),
                exit_events=("cancel", "churn"),
            ),
            "on_confirm, on_tag: back, on_event: purchase, on_event: refund",
            "on_tag: customer, on_event: cancel, on_event: churn",
            id="everything",
        ),
        pytest.param(
            Triggers(exit_events=("cancel",)), "manual", "on_event: cancel", id="exit-event-only"
        ),
        pytest.param(
            Triggers(exit_tags=("customer",)), "manual", "on_tag: customer", id="exit-tag-only"
        ),
    ],
)
def test_triggers_describe_how_people_join_and_leave(
    triggers: Triggers, enroll: str, exit_: str
) -> None:
    assert triggers.describe() == enroll
    assert triggers.describe_exit() == exit_
