"""The ledger's claim, lease and recovery rules, row by row (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from newsletter.addresses import email_hash
from newsletter.app import App
from newsletter.db import transaction
from newsletter.delivery.base import SendResult, SendStatus
from newsletter.ledger import (
    SKIPPED_AT_CLAIM,
    SKIPPED_BEFORE_SENDING,
    Claimed,
    NewDelivery,
    claim_batch,
    enqueue,
    mark_sending,
    record_results,
    recover_expired_leases,
    skip_withdrawn,
)
from newsletter.models import (
    Campaign,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Enrollment,
    Subscriber,
    Suppression,
)
from tests.conftest import NOW
from tests.factories import add_subscriber, queue_deliveries

LEASE = timedelta(minutes=5)


def fetch(app: App, delivery_id: int) -> Delivery:
    with app.sessions() as session:
        found = session.get(Delivery, delivery_id)
        assert found is not None
        return found


def claim(app: App, **kwargs: object) -> list[int]:
    with transaction(app.sessions) as session:
        options: dict[str, object] = {"worker": "w", "limit": 50, "now": NOW, "lease": LEASE}
        options.update(kwargs)
        return [r.id for r in claim_batch(session, **options)]  # type: ignore[arg-type]


def test_new_rows_are_queued_with_no_attempts_and_a_repeated_key_is_ignored(app: App) -> None:
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "new@example.org")
        row = NewDelivery("k-1", DeliveryKind.DRIP, "tips/walking", NOW, subscriber_id=sub.id)
        assert (
            enqueue(session, [row, NewDelivery("k-2", DeliveryKind.DRIP, "tips/a", NOW)], now=NOW)
            == 2
        )
        assert enqueue(session, [row], now=NOW) == 0
        assert enqueue(session, [], now=NOW) == 0
    with app.sessions() as session:
        stored = session.scalars(select(Delivery).where(Delivery.key == "k-1")).one()
        assert (stored.status, stored.attempts, stored.created_at, stored.due_at) == (
            "queued",
            0,
            NOW,
            NOW,
        )


def test_a_claim_leases_counts_the_attempt_and_sets_the_lease(app: App) -> None:
    with transaction(app.sessions) as session:
        (delivery_id,) = queue_deliveries(
            session, [add_subscriber(session, "c@example.org").id], item_id="tips/a"
        )
    assert claim(app) == [delivery_id]
    row = fetch(app, delivery_id)
    assert (row.status, row.attempts, row.leased_by) == ("leased", 1, "w")
    assert row.lease_expires_at == NOW + LEASE
    assert claim(app) == []  # leased rows are not claimed twice


def test_rows_not_yet_due_are_not_claimed(app: App) -> None:
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "later@example.org")
        (later,) = queue_deliveries(
            session, [sub.id], item_id="tips/a", due_at=NOW + timedelta(seconds=1)
        )
        (due,) = queue_deliveries(session, [sub.id], item_id="tips/b", due_at=NOW)
    assert claim(app) == [due]
    assert fetch(app, later).status == "queued"


def test_the_kinds_filter_claims_only_those_kinds(app: App) -> None:
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "k@example.org")
        (drip,) = queue_deliveries(session, [sub.id], item_id="tips/a")
        (confirmation,) = queue_deliveries(
            session, [sub.id], item_id="system/confirmation", kind=DeliveryKind.CONFIRMATION
        )
    assert claim(app, kinds=[DeliveryKind.CONFIRMATION]) == [confirmation]
    assert fetch(app, drip).status == "queued"
    assert claim(app, kinds=[DeliveryKind.DRIP]) == [drip]


def test_the_limit_takes_the_oldest_due_first(app: App) -> None:
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "lim@example.org")
        (newer,) = queue_deliveries(session, [sub.id], item_id="tips/a", due_at=NOW)
        (older,) = queue_deliveries(
            session, [sub.id], item_id="tips/b", due_at=NOW - timedelta(hours=1)
        )
    assert claim(app, limit=1) == [older]
    assert fetch(app, newer).status == "queued"


@pytest.mark.parametrize("status", ["unsubscribed", "pending", "bounced", "complained"])
def test_a_marketing_row_of_a_subscriber_who_left_is_skipped_not_left_queued(
    app: App, status: str
) -> None:
    """The subscriber is not on the suppression list: the claim correlates the row to them."""
    with transaction(app.sessions) as session:
        gone = add_subscriber(session, f"{status}@example.org", status=status)
        stay = add_subscriber(session, f"stay-{status}@example.org")
        (skipped,) = queue_deliveries(session, [gone.id], item_id="tips/a")
        (kept,) = queue_deliveries(session, [stay.id], item_id="tips/a")
    assert claim(app) == [kept]
    row = fetch(app, skipped)
    assert row.status == "skipped"
    assert row.error is not None
    assert "unsubscribed, suppressed" in row.error
    assert row.attempts == 0


def test_a_confirmation_goes_to_a_pending_or_resubscribing_address(app: App) -> None:
    with transaction(app.sessions) as session:
        ids = [
            queue_deliveries(
                session,
                [add_subscriber(session, f"{s}@c.example", status=s).id],
                item_id="system/confirmation",
                kind=DeliveryKind.CONFIRMATION,
            )[0]
            for s in ("pending", "unsubscribed", "bounced")
        ]
    assert sorted(claim(app)) == sorted(ids[:2])
    assert fetch(app, ids[2]).status == "skipped"


def _suppress(app: App, email: str) -> None:
    with transaction(app.sessions) as session:
        session.add(Suppression(email_hash=email_hash(email), reason="bounced", created_at=NOW))


def test_a_drip_row_to_a_suppressed_address_is_skipped_even_if_the_subscriber_is_active(
    app: App,
) -> None:
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "sup@example.org")
        (delivery_id,) = queue_deliveries(session, [sub.id], item_id="tips/a")
    _suppress(app, "sup@example.org")
    assert claim(app) == []
    assert fetch(app, delivery_id).status == "skipped"


def test_a_test_send_to_a_suppressed_address_is_skipped(app: App) -> None:
    with transaction(app.sessions) as session:
        rows = [
            NewDelivery(f"t-{e}", DeliveryKind.TEST, "campaigns/x", NOW, to_email=e)
            for e in ("seed@example.org", "blocked@example.org")
        ]
        enqueue(session, rows, now=NOW)
    _suppress(app, "blocked@example.org")
    with app.sessions() as session:
        by_key = dict(session.execute(select(Delivery.key, Delivery.id)).all())
    assert claim(app) == [by_key["t-seed@example.org"]]
    assert fetch(app, by_key["t-blocked@example.org"]).status == "skipped"


def test_a_confirmation_to_a_suppressed_but_returning_address_is_not_blocked(app: App) -> None:
    """Confirmations are how an unsubscribed address opts in again: no suppression check."""
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "back@example.org", status="unsubscribed")
        (delivery_id,) = queue_deliveries(
            session, [sub.id], item_id="system/confirmation", kind=DeliveryKind.CONFIRMATION
        )
    _suppress(app, "back@example.org")
    assert claim(app) == [delivery_id]


def test_mark_sending_renews_the_lease_from_now(app: App) -> None:
    with transaction(app.sessions) as session:
        (delivery_id,) = queue_deliveries(
            session, [add_subscriber(session, "r@example.org").id], item_id="tips/a"
        )
    claim(app)
    later = NOW + timedelta(minutes=3)
    with transaction(app.sessions) as session:
        assert mark_sending(session, [delivery_id], now=later, worker="w", lease=LEASE) == [
            delivery_id
        ]
    row = fetch(app, delivery_id)
    assert (row.status, row.lease_expires_at) == ("sending", later + LEASE)
    assert row.lease_expires_at > NOW + LEASE  # renewed forwards, never into the past
    with transaction(app.sessions) as session:  # another worker's row is left alone
        assert mark_sending(session, [delivery_id], now=later, worker="other", lease=LEASE) == []


@pytest.mark.parametrize("lease", [LEASE, None])
def test_mark_sending_writes_the_nonces_of_the_rows_it_marks_only(
    app: App, lease: timedelta | None
) -> None:
    """Nonces go to the rows this worker marks: not to a row another worker holds, not
    to a row outside the chunk; a row given none keeps its own."""
    with transaction(app.sessions) as session:
        ids = queue_deliveries(
            session,
            [add_subscriber(session, f"n{i}@example.org").id for i in range(4)],
            item_id="tips/a",
        )
    mine, kept, theirs, outside = ids
    claim(app)
    later = NOW + timedelta(minutes=2)
    with transaction(app.sessions) as session:
        session.execute(update(Delivery).where(Delivery.id == kept).values(message_nonce="old"))
        session.execute(update(Delivery).where(Delivery.id == theirs).values(leased_by="other"))
        marked = mark_sending(
            session,
            [mine, kept, theirs],
            now=later,
            worker="w",
            lease=lease,
            nonces={mine: "a1", theirs: "c3", outside: "d4"},
        )
    assert marked == [mine, kept]
    rows = {i: fetch(app, i) for i in ids}
    assert {i: (r.status, r.message_nonce) for i, r in rows.items()} == {
        mine: ("sending", "a1"),
        kept: ("sending", "old"),
        theirs: ("leased", None),
        outside: ("leased", None),
    }
    # renewed from ``now``, or left as the claim set it
    expected = NOW + LEASE if lease is None else later + lease
    assert rows[mine].lease_expires_at == rows[kept].lease_expires_at == expected
    assert rows[theirs].lease_expires_at == rows[outside].lease_expires_at == NOW + LEASE


def test_an_outcome_for_a_row_still_leased_is_recorded(app: App) -> None:
    """A render failure is recorded before the row is ever marked ``sending``."""
    with transaction(app.sessions) as session:
        (delivery_id,) = queue_deliveries(
            session, [add_subscriber(session, "rf@example.org").id], item_id="tips/a"
        )
    claim(app)
    with transaction(app.sessions) as session:
        record_results(
            session,
            [SendResult(delivery_id, SendStatus.FAILED, error="render failed: boom")],
            now=NOW,
            max_attempts=5,
        )
    row = fetch(app, delivery_id)
    assert (row.status, row.error, row.lease_expires_at) == ("failed", "render failed: boom", None)


def test_a_retry_is_requeued_with_backoff_until_attempts_run_out(app: App) -> None:
    with transaction(app.sessions) as session:
        (delivery_id,) = queue_deliveries(
            session, [add_subscriber(session, "rt@example.org").id], item_id="tips/a"
        )
    claim(app)
    with transaction(app.sessions) as session:
        record_results(
            session,
            [SendResult(delivery_id, SendStatus.RETRY, error="503", retry_after=30.0)],
            now=NOW,
            max_attempts=2,
        )
    row = fetch(app, delivery_id)
    assert (row.status, row.due_at, row.leased_by, row.error) == (
        "queued",
        NOW + timedelta(seconds=30),
        None,
        "503",
    )
    claim(app, now=NOW + timedelta(seconds=30))
    with transaction(app.sessions) as session:
        record_results(
            session,
            [SendResult(delivery_id, SendStatus.RETRY, error="503 again")],
            now=NOW,
            max_attempts=2,
        )
    row = fetch(app, delivery_id)
    assert (row.status, row.error) == ("failed", "gave up after 2 attempts: 503 again")


def test_recovery_requeues_expired_leases_and_never_an_unexpired_one(app: App) -> None:
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "rec@example.org")
        leased, sending, fresh = queue_deliveries(session, [sub.id] * 1, item_id="tips/a") + (
            queue_deliveries(session, [sub.id], item_id="tips/b")
            + queue_deliveries(session, [sub.id], item_id="tips/c")
        )
    claim(app)
    with transaction(app.sessions) as session:
        mark_sending(session, [sending], now=NOW)
        session.execute(  # only ``fresh`` keeps a lease that has not expired
            update(Delivery)
            .where(Delivery.id == fresh)
            .values(lease_expires_at=NOW + timedelta(hours=1))
        )
    at = NOW + LEASE  # exactly at expiry: not yet expired
    with transaction(app.sessions) as session:
        assert recover_expired_leases(session, now=at) == (0, 0)
    with transaction(app.sessions) as session:
        assert recover_expired_leases(session, now=at + timedelta(seconds=1)) == (1, 1)
    assert (fetch(app, leased).status, fetch(app, leased).attempts) == ("queued", 0)
    assert fetch(app, sending).status == "unknown"
    assert (fetch(app, fresh).status, fetch(app, fresh).attempts) == ("leased", 1)


def test_without_attention_a_claim_is_one_round_even_when_it_keeps_nothing(app: App) -> None:
    """A batch that was all skipped returns nothing; the next claim takes the rows after it."""
    with transaction(app.sessions) as session:
        gone = add_subscriber(session, "one-round-gone@example.org", status="unsubscribed")
        stay = add_subscriber(session, "one-round-stay@example.org")
        (skipped,) = queue_deliveries(session, [gone.id], item_id="tips/a")
        (later,) = queue_deliveries(
            session, [stay.id], item_id="tips/a", due_at=NOW - timedelta(seconds=1)
        )
        session.execute(  # the skipped row is due first
            update(Delivery).where(Delivery.id == skipped).values(due_at=NOW - timedelta(seconds=2))
        )
    assert claim(app, limit=1) == []
    assert (fetch(app, skipped).status, fetch(app, later).status) == ("skipped", "queued")
    assert claim(app, limit=1) == [later]


@pytest.mark.postgres
def test_on_postgresql_a_second_worker_skips_the_rows_another_worker_holds(app: App) -> None:
    """``FOR UPDATE SKIP LOCKED``: while worker A's claim is not committed, worker B takes
    the next row instead of leasing A's rows again (or waiting for A)."""
    with app.sessions() as probe:
        if probe.get_bind().dialect.name != "postgresql":
            pytest.skip("row locks are PostgreSQL's")
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "locks@example.org")
        first, second = queue_deliveries(session, [sub.id], item_id="tips/a") + (
            queue_deliveries(session, [sub.id], item_id="tips/b")
        )
    holder = app.sessions()
    try:
        held = claim_batch(holder, worker="a", limit=1, now=NOW, lease=LEASE)
        assert [r.id for r in held] == [first]
        with transaction(app.sessions) as other:
            other.execute(text("SET LOCAL lock_timeout = '3s'"))
            taken = claim_batch(other, worker="b", limit=1, now=NOW, lease=LEASE)
            assert [r.id for r in taken] == [second]
        holder.commit()
    finally:
        holder.close()
    assert (fetch(app, first).leased_by, fetch(app, second).leased_by) == ("a", "b")
    assert (fetch(app, first).attempts, fetch(app, second).attempts) == (1, 1)


def test_skip_withdrawn_skips_held_rows_of_a_subscriber_who_left_since_the_claim(app: App) -> None:
    with transaction(app.sessions) as session:
        leaving = add_subscriber(session, "leaving@example.org")
        staying = add_subscriber(session, "staying@example.org")
        gone, kept = queue_deliveries(session, [leaving.id, staying.id], item_id="tips/a")
    assert claim(app) == [gone, kept]
    with transaction(app.sessions) as session:
        session.execute(
            update(Subscriber).where(Subscriber.id == leaving.id).values(status="unsubscribed")
        )
    with transaction(app.sessions) as session:
        assert skip_withdrawn(session, [], now=NOW) == []
        assert skip_withdrawn(session, [gone, kept], now=NOW) == [gone]
    row = fetch(app, gone)
    assert (row.status, row.error, row.lease_expires_at) == (
        "skipped",
        SKIPPED_BEFORE_SENDING,
        None,
    )
    assert fetch(app, kept).status == "leased"


def test_a_drip_row_is_skipped_when_its_own_enrollment_exited_and_only_then(app: App) -> None:
    """The exit check looks at the row's own enrollment: another enrollment's exit (or an
    enrollment still active) does not skip it."""
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "two-sequences@example.org")
        active = Enrollment(
            subscriber_id=sub.id, sequence="welcome", status="active", created_at=NOW
        )
        exited = Enrollment(
            subscriber_id=sub.id, sequence="onboarding", status="exited", created_at=NOW
        )
        session.add_all([active, exited])
        session.flush()
        for key, enrollment in (("own-active", active), ("own-exited", exited)):
            enqueue(
                session,
                [
                    NewDelivery(
                        key,
                        DeliveryKind.DRIP,
                        "tips/a",
                        NOW,
                        subscriber_id=sub.id,
                        enrollment_id=enrollment.id,
                        step=0,
                    )
                ],
                now=NOW,
            )
    with app.sessions() as session:
        ids = dict(session.execute(select(Delivery.key, Delivery.id)).all())
    assert claim(app) == [ids["own-active"]]
    assert fetch(app, ids["own-exited"]).status == "skipped"


def test_with_attention_a_claim_gives_up_after_twenty_rounds_that_keep_nothing(app: App) -> None:
    """Attention that keeps none of the rows it sees (and leaves them queued) is asked 20
    times, each time about rows no earlier round saw; then the claim is empty."""
    with transaction(app.sessions) as session:
        subs = [add_subscriber(session, f"always-left-{n}@example.org").id for n in range(25)]
        ids = [queue_deliveries(session, [sub], item_id="tips/a")[0] for sub in subs]
    rounds: list[list[int]] = []

    def keep_none(_session: Session, rows: list[Claimed], _now: datetime) -> list[Claimed]:
        rounds.append([r.id for r in rows])
        return []

    assert claim(app, attention=keep_none, limit=1) == []
    assert rounds == [[i] for i in ids[:20]]
    assert {fetch(app, i).status for i in ids} == {"queued"}


def test_a_round_reads_past_rows_an_earlier_round_left_queued(app: App) -> None:
    """Rows attention left queued (their subscriber held by another claim) are not read
    again by the same claim: the next round takes the rows behind them."""
    with transaction(app.sessions) as session:
        subs = [add_subscriber(session, f"behind-{n}@example.org").id for n in range(3)]
        held, free, other = (queue_deliveries(session, [s], item_id="tips/a")[0] for s in subs)
    rounds: list[list[int]] = []

    def held_elsewhere(_session: Session, rows: list[Claimed], _now: datetime) -> list[Claimed]:
        rounds.append([r.id for r in rows])
        return [r for r in rows if r.id != held]

    assert claim(app, attention=held_elsewhere, limit=1) == [free]
    assert rounds == [[held], [free]]
    assert (fetch(app, held).status, fetch(app, other).status) == ("queued", "queued")


@pytest.mark.parametrize("held_state", ["paused", "stale"])
def test_only_the_rows_of_a_paused_or_stale_campaign_wait_in_the_queue(
    app: App, held_state: str
) -> None:
    """The pause check looks at the row's own campaign: a sending campaign's rows go out
    while another campaign is paused (or stale), whose rows stay queued, not skipped."""
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "two-campaigns@example.org")
        campaigns = {
            state: Campaign(
                name=f"c-{state}",
                item_id="campaigns/a",
                state=state,
                created_at=NOW,
                updated_at=NOW,
            )
            for state in ("sending", held_state)
        }
        session.add_all(campaigns.values())
        session.flush()
        enqueue(
            session,
            [
                NewDelivery(
                    f"row-{state}",
                    DeliveryKind.CAMPAIGN,
                    "campaigns/a",
                    NOW,
                    subscriber_id=sub.id,
                    campaign_id=campaign.id,
                )
                for state, campaign in campaigns.items()
            ],
            now=NOW,
        )
    with app.sessions() as session:
        ids = dict(session.execute(select(Delivery.key, Delivery.id)).all())
    assert claim(app) == [ids["row-sending"]]
    assert fetch(app, ids[f"row-{held_state}"]).status == "queued"


def test_attention_decides_which_eligible_rows_go_and_they_come_back_leased_in_due_order(
    app: App,
) -> None:
    """Attention sees the eligible rows only; the rows it keeps are leased and returned as
    stored (fresh from the database), oldest due first whatever order attention chose; the
    rows it dropped are left as they were."""
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "attention@example.org")
        gone = add_subscriber(session, "attention-gone@example.org", status="unsubscribed")
        (left_out,) = queue_deliveries(session, [gone.id], item_id="tips/a")
        first, second, third = (
            queue_deliveries(
                session, [sub.id], item_id=f"tips/{n}", due_at=NOW - timedelta(hours=h)
            )[0]
            for n, h in (("x", 3), ("y", 2), ("z", 1))
        )
    seen: list[list[int]] = []

    def keep_two_reversed(_session: Session, rows: list[Claimed], _now: datetime) -> list[Claimed]:
        seen.append([r.id for r in rows])
        return [r for r in reversed(rows) if r.id != second]

    with transaction(app.sessions) as session:
        kept = claim_batch(
            session, worker="w", limit=50, now=NOW, lease=LEASE, attention=keep_two_reversed
        )
        assert [(r.id, r.status, r.leased_by, r.attempts, r.lease_expires_at) for r in kept] == [
            (first, "leased", "w", 1, NOW + LEASE),
            (third, "leased", "w", 1, NOW + LEASE),
        ]
    assert seen == [[first, second, third]]
    assert (fetch(app, second).status, fetch(app, second).attempts) == ("queued", 0)
    assert fetch(app, left_out).status == "skipped"


def test_a_marketing_row_with_no_subscriber_and_no_address_is_skipped(app: App) -> None:
    """Nobody to check against the suppression list and nobody to send to: skipped."""
    with transaction(app.sessions) as session:
        enqueue(session, [NewDelivery("orphan", DeliveryKind.DRIP, "tips/a", NOW)], now=NOW)
        orphan = session.scalars(select(Delivery.id).where(Delivery.key == "orphan")).one()
    assert claim(app) == []
    assert (fetch(app, orphan).status, fetch(app, orphan).error) == (
        "skipped",
        "skipped at claim: unsubscribed, suppressed, exited or campaign cancelled",
    )


def test_a_confirmation_claimed_beside_an_addressless_marketing_row_is_leased(app: App) -> None:
    """No marketing row of the batch has an address to look up: the suppression check
    finds nothing to block, the confirmation goes and the orphan is skipped."""
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "pending@example.org", status="pending")
        (confirmation,) = queue_deliveries(
            session, [sub.id], item_id="system/confirmation", kind=DeliveryKind.CONFIRMATION
        )
        enqueue(session, [NewDelivery("orphan", DeliveryKind.DRIP, "tips/a", NOW)], now=NOW)
        orphan = session.scalars(select(Delivery.id).where(Delivery.key == "orphan")).one()
    assert claim(app) == [confirmation]
    assert fetch(app, orphan).status == "skipped"


def test_the_skip_reasons_read_as_operators_see_them() -> None:
    """Stored in ``deliveries.error`` and shown by ``stats`` and the API: pinned as text."""
    assert SKIPPED_AT_CLAIM == (
        "skipped at claim: unsubscribed, suppressed, exited or campaign cancelled"
    )
    assert SKIPPED_BEFORE_SENDING == (
        "skipped before sending: unsubscribed, suppressed or campaign cancelled after the claim"
    )


def test_a_test_send_of_a_draft_goes_out_and_a_cancelled_campaigns_row_is_skipped(
    app: App,
) -> None:
    """Only a campaign that is sending sends to subscribers; a test send (``campaign test``)
    goes to its seed address whatever the campaign's state."""
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "campaign-state@example.org")
        draft, cancelled = (
            Campaign(name=f"c-{s}", item_id="campaigns/a", state=s, created_at=NOW, updated_at=NOW)
            for s in ("draft", "cancelled")
        )
        session.add_all([draft, cancelled])
        session.flush()
        enqueue(
            session,
            [
                NewDelivery(
                    "seed",
                    DeliveryKind.TEST,
                    "campaigns/a",
                    NOW,
                    to_email="seed@example.org",
                    campaign_id=draft.id,
                ),
                NewDelivery(
                    "cancelled",
                    DeliveryKind.CAMPAIGN,
                    "campaigns/a",
                    NOW,
                    subscriber_id=sub.id,
                    campaign_id=cancelled.id,
                ),
            ],
            now=NOW,
        )
    with app.sessions() as session:
        ids = dict(session.execute(select(Delivery.key, Delivery.id)).all())
    assert claim(app) == [ids["seed"]]
    assert fetch(app, ids["cancelled"]).status == "skipped"


def test_a_claimed_row_has_a_field_for_every_ledger_column() -> None:
    """``Claimed`` is built from the claim's row by column name: a column added to
    ``deliveries`` needs its field (or the claim fails loudly)."""
    columns = [c.name for c in Delivery.__table__.columns]
    assert [f.name for f in fields(Claimed)] == columns


def test_claimed_rows_hold_what_the_ledger_holds_after_the_claim(app: App) -> None:
    """The claim hands back plain values, set to what it wrote: the same as reading the
    rows again after the commit (status, lease, attempts, every other column)."""
    with transaction(app.sessions) as session:
        sub = add_subscriber(session, "plain@example.org")
        queue_deliveries(session, [sub.id], item_id="tips/a", due_at=NOW - timedelta(hours=1))
        queue_deliveries(session, [sub.id], item_id="tips/b", due_at=NOW)
    with transaction(app.sessions) as session:
        rows = claim_batch(session, worker="w", limit=50, now=NOW, lease=LEASE)
    assert [r.item_id for r in rows] == ["tips/a", "tips/b"]
    for row in rows:
        stored = fetch(app, row.id)
        expected = {c.name: getattr(stored, c.name) for c in Delivery.__table__.columns}
        assert asdict(row) == expected
        assert (row.status, row.leased_by, row.attempts) == ("leased", "w", 1)


def test_a_claim_sees_rows_the_caller_added_to_its_session_and_did_not_flush(app: App) -> None:
    """The claim reads through the connection (plain rows), which does not autoflush: it
    flushes first, so a row added in the same unit of work is claimed, not missed."""
    with transaction(app.sessions) as session:
        subscriber = Subscriber(
            public_id="p-unflushed",
            email="unflushed@example.org",
            timezone="UTC",
            status="active",
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(subscriber)
        session.flush()
        row = Delivery(
            key="test:unflushed",
            kind=DeliveryKind.DRIP.value,
            subscriber_id=subscriber.id,
            item_id="tips/a",
            status=DeliveryStatus.QUEUED.value,
            attempts=0,
            due_at=NOW,
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(row)  # pending in the session, not written yet
        claimed = claim_batch(session, worker="w", limit=10, now=NOW, lease=LEASE)
        assert [c.id for c in claimed] == [row.id]
