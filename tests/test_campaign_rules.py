"""The checks every campaign use case shares (``newsletter.campaigns.rules``), called directly."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from newsletter.app import App
from newsletter.campaigns.rules import (
    CampaignItem,
    campaign_item,
    editable,
    new_name,
    require_audience,
    require_postal_address,
    require_real_content,
    slugify,
)
from newsletter.campaigns.schedule import Segment
from newsletter.db import transaction
from newsletter.errors import CampaignError, CampaignNotFound
from newsletter.models import Campaign
from newsletter.settings import Settings
from tests import factories
from tests.conftest import NOW

ITEM = "campaigns/seven-day-reset"


def _add_campaign(app: App, name: str, state: str) -> None:
    with transaction(app.sessions) as session:
        session.add(Campaign(name=name, item_id=ITEM, state=state, created_at=NOW, updated_at=NOW))


@pytest.mark.parametrize("state", ["draft", "scheduled"])
def test_a_draft_or_scheduled_campaign_is_editable(app: App, state: str) -> None:
    _add_campaign(app, "spring", state)
    with app.sessions() as session:
        campaign = editable(session, " spring ", "edit")
        assert (campaign.name, campaign.state) == ("spring", state)


@pytest.mark.parametrize(
    ("state", "verb", "message"),
    [
        (
            "sending",
            "edit",
            "campaign 'spring' is sending and cannot be changed (only draft or scheduled "
            "campaigns can be edited); pause or cancel it instead",
        ),
        (
            "paused",
            "schedule",
            "campaign 'spring' is paused and cannot be changed (only draft or scheduled "
            "campaigns can be scheduled); resume or cancel it instead",
        ),
        (
            "stale",
            "delete",
            "campaign 'spring' is stale and cannot be changed (only draft or scheduled "
            "campaigns can be deleted); resume or cancel it instead",
        ),
        (
            "sent",
            "send",
            "campaign 'spring' is sent and cannot be changed (only draft or scheduled "
            "campaigns can be sent); create a new campaign instead",
        ),
        (
            "cancelled",
            "rename",
            "campaign 'spring' is cancelled and cannot be changed (only draft or scheduled "
            "campaigns can be rename); create a new campaign instead",
        ),
    ],
)
def test_a_campaign_past_scheduling_is_not_editable_and_the_error_says_what_to_do(
    app: App, state: str, verb: str, message: str
) -> None:
    _add_campaign(app, "spring", state)
    with app.sessions() as session, pytest.raises(CampaignError) as refused:
        editable(session, "spring", verb)
    assert str(refused.value) == message


def test_an_unknown_campaign_is_not_found(app: App) -> None:
    with app.sessions() as session, pytest.raises(CampaignNotFound):
        editable(session, "nothing", "edit")


@pytest.mark.postgres
def test_on_postgresql_an_editable_campaign_is_locked_until_the_edit_commits(
    app: App, settings: Settings
) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's (SQLite locks the whole database)")
    _add_campaign(app, "spring", "draft")
    other = create_engine(settings.database_url)
    try:
        with app.sessions() as session:
            editable(session, "spring", "edit")
            with other.connect() as conn, pytest.raises(OperationalError, match="lock"):
                conn.execute(
                    text("SELECT id FROM campaigns WHERE name = 'spring' FOR UPDATE NOWAIT")
                )
            session.rollback()
        with other.connect() as conn:  # released with the transaction
            conn.execute(text("SELECT id FROM campaigns WHERE name = 'spring' FOR UPDATE NOWAIT"))
    finally:
        other.dispose()


def test_a_campaign_item_is_its_id_and_slug(app: App) -> None:
    assert campaign_item(app, f"  {ITEM}\n") == CampaignItem(ITEM, "seven-day-reset")


def test_a_transactional_item_is_no_campaign(app: App) -> None:
    with pytest.raises(CampaignError) as refused:
        campaign_item(app, "system/confirmation")
    assert str(refused.value) == (
        "'system/confirmation' is a transactional email without an unsubscribe footer; "
        "pick an item from content/campaigns/ (see `newsletter content list`)"
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("  black-friday \n", "black-friday", id="trimmed"),
        pytest.param("a", "a", id="one-character"),
        pytest.param("x" * 200, "x" * 200, id="200-characters"),
        pytest.param("spring_2026-b", "spring_2026-b", id="underscore-digits-hyphen"),
    ],
)
def test_a_given_name_is_kept_trimmed(app: App, given: str, expected: str) -> None:
    _add_campaign(app, "seven-day-reset", "draft")
    with app.sessions() as session:
        assert new_name(session, given, default="seven-day-reset") == expected


@pytest.mark.parametrize("given", ["", "   ", "x" * 201])
def test_a_given_name_must_have_1_to_200_characters(app: App, given: str) -> None:
    with app.sessions() as session, pytest.raises(CampaignError) as refused:
        new_name(session, given, default="seven-day-reset")
    assert str(refused.value) == "give --name a name of 1 to 200 characters"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            "Black Friday!",
            "campaign name 'Black Friday!' is not a slug: use lower-case letters, digits and "
            "hyphens, e.g. --name black-friday",
        ),
        (
            "-lead",
            "campaign name '-lead' is not a slug: use lower-case letters, digits and hyphens, "
            "e.g. --name lead",
        ),
        (
            "A" * 100,
            f"campaign name {'A' * 64!r} is not a slug: use lower-case letters, digits and "
            f"hyphens, e.g. --name {'a' * 100}",
        ),
    ],
)
def test_a_given_name_must_be_a_slug_and_a_suggestion_is_made(
    app: App, given: str, message: str
) -> None:
    with app.sessions() as session, pytest.raises(CampaignError) as refused:
        new_name(session, given, default="seven-day-reset")
    assert str(refused.value) == message


def test_a_given_name_that_is_taken_is_refused(app: App) -> None:
    _add_campaign(app, "spring", "sent")
    _add_campaign(app, "summer", "draft")
    with app.sessions() as session:
        with pytest.raises(CampaignError) as refused:
            new_name(session, "spring", default="seven-day-reset")
        assert str(refused.value) == (
            "a campaign named 'spring' exists; pick another --name (see `newsletter campaign list`)"
        )
        assert new_name(session, "autumn", default="seven-day-reset") == "autumn"


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        pytest.param((), "seven-day-reset", id="free"),
        pytest.param(("seven-day-reset",), "seven-day-reset-2", id="taken-once"),
        pytest.param(
            ("seven-day-reset", "seven-day-reset-2", "seven-day-reset-3"),
            "seven-day-reset-4",
            id="taken-three-times",
        ),
        pytest.param(("seven-day-reset-2", "other"), "seven-day-reset", id="only-a-suffix-taken"),
    ],
)
def test_without_a_name_the_default_gets_the_first_free_number(
    app: App, taken: tuple[str, ...], expected: str
) -> None:
    for name in taken:
        _add_campaign(app, name, "sent")
    with app.sessions() as session:
        assert new_name(session, None, default="seven-day-reset") == expected


@pytest.mark.parametrize(
    ("text_", "expected"),
    [
        ("Black Friday!", "black-friday"),
        ("  Spring  2026 -- Deals ", "spring-2026-deals"),
        ("!!!", "my-campaign"),
        ("", "my-campaign"),
        ("ab " * 100, "-".join(["ab"] * 100)[:200]),
    ],
)
def test_slugify_suggests_a_slug(text_: str, expected: str) -> None:
    assert slugify(text_) == expected


def test_slugify_cuts_at_200_characters() -> None:
    assert slugify("y" * 250) == "y" * 200


def test_the_audience_is_counted_and_an_empty_one_refused(app: App) -> None:
    with transaction(app.sessions) as session:
        factories.add_subscriber(session, "a@example.org", tags=["back"])
        factories.add_subscriber(session, "b@example.org", tags=["back", "desk"])
        factories.add_subscriber(session, "c@example.org", tags=["desk"])
    with app.sessions() as session:
        assert require_audience(session, Segment(include=("back",))) == 2
        assert require_audience(session, Segment(include=("desk",), exclude=("back",))) == 1
        assert require_audience(session, Segment()) == 3
        with pytest.raises(CampaignError) as refused:
            require_audience(session, Segment(include=("nobody",)))
    assert str(refused.value) == (
        "no active subscriber matches (tags: any of nobody); check the tags with "
        "`newsletter subscribers list --status active --tag TAG`"
    )


def test_the_postal_address_is_required(make_settings: Callable[..., Settings]) -> None:
    with_address = App(make_settings())
    without = App(make_settings(postal_address="   "))
    try:
        require_postal_address(with_address)
        with pytest.raises(CampaignError) as refused:
            require_postal_address(without)
        assert str(refused.value) == (
            "NEWSLETTER_POSTAL_ADDRESS is not set: every marketing email must show your postal "
            "address; set it (e.g. in .env) and run again"
        )
    finally:
        with_address.close()
        without.close()


def test_example_content_is_never_real_content(app: App) -> None:
    examples = [i.id for i in app.library.items() if i.example]
    assert "testimonials/runner" in examples
    require_real_content(app, ITEM)
    require_real_content(app, "campaigns/no-such-item")
    with pytest.raises(CampaignError) as refused:
        require_real_content(app, "testimonials/runner")
    assert str(refused.value) == (
        "'testimonials/runner' is example content (example: true) and is never sent to "
        "real subscribers; replace it with your own and remove the flag, or pick another item"
    )
