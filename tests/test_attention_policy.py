"""The attention policy built from settings and the content library, and the checks of a
campaign's ``--priority`` and ``--topic`` (no database is touched)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.app import App
from newsletter.attention.campaign_rules import check_priority, check_topic
from newsletter.attention.cap import Cap
from newsletter.attention.policy import (
    DEFAULT_FREQUENCY,
    FREQUENCIES,
    AttentionPolicy,
    ItemFacts,
    SequenceRule,
    build_policy,
    load_topics,
)
from newsletter.attention.topics import Topic, Topics
from newsletter.content.model import SendWindow
from newsletter.errors import CampaignError
from newsletter.settings import Settings

DAY = timedelta(days=1)
WEEK = Cap(1, 7 * DAY)
WINDOW = SendWindow(time(8), time(11))
ROOT = Path(__file__).resolve().parent.parent


def policy(caps: tuple[Cap, ...] = (Cap(1, DAY),)) -> AttentionPolicy:
    return AttentionPolicy(
        caps=caps,
        stale_hours=48,
        default_zone="Europe/Berlin",
        sequences={"basics": SequenceRule(3, WINDOW, True)},
        items={"tips/a": ItemFacts(None, ("ql",)), "campaigns/x": ItemFacts("offers", ())},
        topics=Topics((Topic("tips", "Tips", ("basics",)), Topic("ql", "QL", (), ("ql",)))),
    )


def test_caps_for_adds_the_subscribers_own_weekly_cap() -> None:
    daily = Cap(1, DAY)
    assert policy().caps_for(None) == (daily,)
    assert policy().caps_for("as_they_come") == (daily,)
    assert policy().caps_for("weekly") == (daily, WEEK)
    assert policy().caps_for("no-such-choice") == (daily,)
    assert policy(caps=()).caps_for("weekly") == (WEEK,)
    assert policy(caps=()).caps_for(None) == ()


def test_the_default_frequency_is_as_they_come() -> None:
    assert DEFAULT_FREQUENCY == "as_they_come"
    assert FREQUENCIES == {
        "as_they_come": ("As they come", None),
        "weekly": ("At most one a week", WEEK),
    }


def test_sequence_priority_and_zone() -> None:
    p = policy()
    assert p.sequence_priority("basics") == 3
    assert p.sequence_priority("other") == 2
    assert p.sequence_priority(None) == 2
    assert p.zone("Asia/Tokyo") == ZoneInfo("Asia/Tokyo")
    assert p.zone("Mars/Olympus") == ZoneInfo("Europe/Berlin")
    assert p.zone(None) == ZoneInfo("Europe/Berlin")
    assert p.zone("") == ZoneInfo("Europe/Berlin")
    assert p.zone("Asia/Tokyo") is p.zone("Asia/Tokyo")  # cached


def test_topic_of_reads_campaign_item_sequence_and_tags() -> None:
    p = policy()
    assert p.topic_of("campaigns/x") == "offers"
    assert p.topic_of("campaigns/x", campaign_topic="ql") == "ql"
    assert p.topic_of("tips/a", sequence="basics") == "tips"
    assert p.topic_of("tips/a") == "ql"
    assert p.topic_of("tips/unknown") is None
    assert p.topic_of("tips/unknown", sequence="basics") == "tips"


ASKED: list[dict[str, object]] = []


class _CountingTopics(Topics):
    """Topics that record each question asked of them."""

    def topic_for(self, **kwargs: object) -> str | None:  # type: ignore[override]
        ASKED.append(kwargs)
        return super().topic_for(**kwargs)  # type: ignore[arg-type]


def test_topic_of_asks_the_topics_once_per_distinct_question() -> None:
    """The claim asks for every row's topic: the answer is remembered, per item, sequence
    and campaign topic (topics.yaml and the items do not change in a process)."""
    ASKED.clear()
    p = policy()
    p.topics = _CountingTopics(p.topics.topics)
    questions = [("tips/a", "basics", None), ("tips/a", None, None), ("tips/a", None, "ql")]
    first = [p.topic_of(i, sequence=s, campaign_topic=c) for i, s, c in questions]
    again = [p.topic_of(i, sequence=s, campaign_topic=c) for i, s, c in questions]
    assert first == again == ["tips", "ql", "ql"]
    assert len(ASKED) == 3
    assert p.topic_of("tips/unknown") is None
    assert p.topic_of("tips/unknown") is None
    assert len(ASKED) == 4


def test_build_policy_over_the_shipped_content(make_settings: Callable[..., Settings]) -> None:
    app = App(make_settings(marketing_cap="2/7d", campaign_stale_hours="12"))
    try:
        built = build_policy(app.settings, app.library)
    finally:
        app.close()
    assert built.caps == (Cap(2, 7 * DAY),)
    assert (built.stale_hours, built.default_zone) == (12, "Europe/Berlin")
    assert built.sequences["back-pain-basics"] == SequenceRule(2, WINDOW, True)
    assert built.sequences["first-week-with-your-tool"].first_exempt is True
    assert built.items["campaigns/seven-day-reset"].topic == "offers"
    assert built.items["tips/erector-spinae"].tags == ("low-back", "erector-spinae")
    assert built.topics.names == ("tips", "offers")
    assert built.topic_of("tips/erector-spinae", sequence="back-pain-basics") == "tips"


def test_build_policy_with_the_cap_off(make_settings: Callable[..., Settings]) -> None:
    app = App(make_settings(marketing_cap="off"))
    try:
        assert build_policy(app.settings, app.library).caps == ()
    finally:
        app.close()


def test_load_topics_without_a_file_is_no_topics(tmp_path: Path) -> None:
    assert load_topics(tmp_path, sequences=[], item_topics=[]) == Topics()
    (tmp_path / "topics.yaml").write_text("topics:\n  - name: a\n    description: A.\n")
    assert load_topics(tmp_path, sequences=[], item_topics=[]).names == ("a",)


@pytest.mark.parametrize(("text", "value"), [("high", 3), (" Low ", 1), ("normal", 2)])
def test_check_priority(text: str, value: int) -> None:
    assert check_priority(text) == value


def test_check_priority_says_what_to_do() -> None:
    with pytest.raises(CampaignError) as caught:
        check_priority("urgent")
    assert (
        str(caught.value) == "bad priority 'urgent': use high, normal or low; e.g. --priority high"
    )
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_check_topic(make_settings: Callable[..., Settings]) -> None:
    app = App(make_settings())
    try:
        assert check_topic(app, None) is None
        assert check_topic(app, "  ") is None
        assert check_topic(app, "") is None
        assert check_topic(app, " offers ") == "offers"
        with pytest.raises(CampaignError) as caught:
            check_topic(app, "news")
        assert str(caught.value) == (
            "unknown topic 'news' (known: tips, offers); pick one with --topic"
        )
    finally:
        app.close()


def test_check_topic_without_topics_yaml(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    content = tmp_path / "content"
    shutil.copytree(ROOT / "content", content)
    (content / "topics.yaml").unlink()
    app = App(make_settings(content_dir=str(content)))
    try:
        with pytest.raises(CampaignError) as caught:
            check_topic(app, "offers")
        assert str(caught.value) == (
            "unknown topic 'offers' (known: none: add content/topics.yaml); pick one with --topic"
        )
    finally:
        app.close()
