"""What each webhook event's ``data`` carries (pure): exact shapes a receiver relies on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from newsletter.webhooks.payloads import (
    CampaignFacts,
    EmailFacts,
    SubscriberFacts,
    campaign_data,
    email_data,
    forgotten_data,
    sequence_data,
    short_subscriber,
    subscriber_data,
)

ANN = SubscriberFacts(
    public_id="p-1",
    email="ann@example.com",
    first_name="Ann",
    status="active",
    tags=("vip", "shop"),
    timezone="Europe/Paris",
)


def _email(status: str, error: str | None) -> EmailFacts:
    return EmailFacts(
        delivery_id=7,
        kind="campaign",
        item_id="spring",
        status=status,
        campaign="spring-sale",
        sequence=None,
        provider_message_id="m-9",
        error=error,
    )


def test_subscriber_data_carries_the_subscriber_and_the_extra_keys() -> None:
    assert subscriber_data(ANN, reason="bounce") == {
        "subscriber": {
            "id": "p-1",
            "email": "ann@example.com",
            "first_name": "Ann",
            "status": "active",
            "tags": ["vip", "shop"],
            "timezone": "Europe/Paris",
        },
        "reason": "bounce",
    }


def test_forgotten_carries_the_public_id_only() -> None:
    assert forgotten_data("p-1") == {"subscriber": {"id": "p-1"}}


def test_short_subscriber_is_id_and_email_or_none() -> None:
    assert short_subscriber(ANN) == {"id": "p-1", "email": "ann@example.com"}
    assert short_subscriber(None) is None


def test_a_sent_email_has_no_error_key() -> None:
    assert email_data(_email("sent", "ignored"), ANN) == {
        "email": {
            "delivery_id": 7,
            "kind": "campaign",
            "item": "spring",
            "status": "sent",
            "campaign": "spring-sale",
            "sequence": None,
            "provider_message_id": "m-9",
        },
        "subscriber": {"id": "p-1", "email": "ann@example.com"},
    }


def test_a_failed_email_carries_its_error() -> None:
    data = email_data(_email("failed", "550 no such user"), None)
    assert data["email"]["error"] == "550 no such user"
    assert data["email"]["status"] == "failed"
    assert data["subscriber"] is None


def test_sequence_data() -> None:
    assert sequence_data("welcome", ANN, step=3) == {
        "sequence": {"name": "welcome"},
        "subscriber": {"id": "p-1", "email": "ann@example.com"},
        "step": 3,
    }
    assert sequence_data("welcome", None) == {"sequence": {"name": "welcome"}, "subscriber": None}


def test_campaign_times_are_iso_with_z_and_none_stays_none() -> None:
    started = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    facts = CampaignFacts(
        name="spring-sale",
        item_id="spring",
        state="sending",
        started_at=started,
        finished_at=None,
        audience_count=1200,
    )
    assert campaign_data(facts) == {
        "campaign": {
            "name": "spring-sale",
            "item": "spring",
            "state": "sending",
            "started_at": "2026-03-01T09:30:00Z",
            "finished_at": None,
            "audience_count": 1200,
        }
    }
    paris = datetime(2026, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    other = CampaignFacts("c", "i", "finished", None, paris, 0)
    assert campaign_data(other)["campaign"]["finished_at"] == "2026-03-01T10:30:00+01:00"
    assert campaign_data(other)["campaign"]["started_at"] is None
