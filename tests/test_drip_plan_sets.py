"""Set-based planning (one decision per situation, batch writes) gives, row for row, what
deciding each due enrollment alone with ``planning`` and ``timing`` gives: generated
enrollments in many situations (subscriber left, unknown sequence, unknown zone, every
position and last item, random items already had, example items ahead, out of window),
on SQLite and PostgreSQL, with batches small and large."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from newsletter.app import App
from newsletter.db import transaction
from newsletter.drip import planner
from newsletter.drip.planner import MISSING_SEQUENCE_RETRY, Catalog, ZoneResolver, plan_drips
from newsletter.drip.planning import choose_next
from newsletter.drip.store import IdList, PlannedRow, insert_for_enrollments, insert_planned
from newsletter.drip.timing import in_window, next_in_window
from newsletter.models import Delivery, Enrollment, Subscriber
from newsletter.settings import Settings

NOW = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)  # Berlin 09:30 (in window), New York 03:30
SEQ = "back-pain-basics"
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "", "Not/AZone"]


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> Iterator[App]:
    application = App(make_settings())
    yield application
    application.close()


NEWS = [f"news/issue-{n}" for n in range(7)]


def generate(app: App, count: int, seed: int) -> dict[int, dict[str, Any]]:
    """Subscribers each with one due enrollment in a random situation; returns, per
    enrollment id, the inputs the reference decides on."""
    rng = random.Random(seed)
    catalog = Catalog.from_app(app)
    steps = [s.item_id for s in catalog.sequences[SEQ].steps]
    items = sorted({*steps, *(i for kind in catalog.pool.values() for i in kind)})
    inputs: dict[int, dict[str, Any]] = {}
    with transaction(app.sessions) as session:
        for n in range(count):
            zone = rng.choice(ZONES)
            status = "active" if rng.random() < 0.85 else rng.choice(["unsubscribed", "bounced"])
            subscriber = Subscriber(
                public_id=f"p{seed}-{n}",
                email=f"r{n}@example.org",
                timezone=zone,
                status=status,
                tags=[],
                attributes={},
                created_at=NOW,
                updated_at=NOW,
            )
            session.add(subscriber)
            session.flush()
            sequence = SEQ if rng.random() < 0.9 else "gone-sequence"
            position = rng.randrange(0, len(steps) + 1)
            last = rng.choice([None, None, "tips/removed-item", *steps])
            had = set(rng.sample(items, rng.choice([0, 0, 1, 2, 5, len(items) - 1])))
            # Items no decision tests (campaign news, items not in the library): histories
            # differ by them, decisions must not (the planner leaves them out of situations).
            had |= set(rng.sample(NEWS, rng.choice([0, 1, 3])))
            enrollment = Enrollment(
                subscriber_id=subscriber.id,
                sequence=sequence,
                status="active",
                position=position,
                last_item_id=last,
                next_due_at=NOW - timedelta(minutes=rng.randrange(0, 600)),
                created_at=NOW - timedelta(days=30),
            )
            session.add(enrollment)
            session.flush()
            for item in sorted(had):
                session.add(
                    Delivery(
                        key=f"campaign:x:{subscriber.id}:{item}",
                        kind="campaign" if rng.random() < 0.3 else "drip",
                        subscriber_id=subscriber.id,
                        item_id=item,
                        status=rng.choice(["sent", "failed", "skipped", "unknown"]),
                        attempts=1,
                        due_at=NOW - timedelta(days=3),
                        created_at=NOW - timedelta(days=3),
                        updated_at=NOW - timedelta(days=3),
                    )
                )
            inputs[enrollment.id] = {
                "subscriber_id": subscriber.id,
                "status": status,
                "sequence": sequence,
                "position": position,
                "last": last,
                "zone": zone,
                "had": had,
            }
    return inputs


def reference(app: App, inputs: dict[int, dict[str, Any]]) -> tuple[dict[int, Any], set[Any]]:
    """Each enrollment decided alone, straight from planning.py and timing.py."""
    catalog = Catalog.from_app(app)
    zones = ZoneResolver(app.settings.default_timezone)
    states: dict[int, Any] = {}
    rows: set[Any] = set()
    for eid, row in inputs.items():
        state = ("active", row["position"], row["last"], None)
        if row["status"] != "active":
            states[eid] = ("stopped", row["position"], row["last"], None)
            continue
        sequence = catalog.sequences.get(row["sequence"])
        if sequence is None:
            states[eid] = ("active", row["position"], row["last"], NOW + MISSING_SEQUENCE_RETRY)
            continue
        had = set(row["had"])
        nxt = choose_next(
            sequence, last_item_id=row["last"], position=row["position"], had=had, pool=catalog.pool
        )
        zone = zones(row["zone"])
        if (
            nxt is not None
            and row["last"] is not None
            and not in_window(NOW, zone, sequence.send_window)
        ):
            due = next_in_window(NOW, zone, sequence.send_window)
            states[eid] = ("active", row["position"], row["last"], due)
            continue
        while nxt is not None and nxt.item_id in catalog.examples:
            rows.add((f"drip:{eid}:{nxt.item_id}", nxt.item_id, nxt.step, "skipped"))
            had.add(nxt.item_id)
            nxt = choose_next(
                sequence, last_item_id=nxt.item_id, position=nxt.position, had=had,
                pool=catalog.pool,
            )  # fmt: skip
        if nxt is None:
            states[eid] = ("done", row["position"], row["last"], None)
            continue
        rows.add((f"drip:{eid}:{nxt.item_id}", nxt.item_id, nxt.step, "queued"))
        states[eid] = (state[0], nxt.position, nxt.item_id, None)
    return states, rows


def observed(app: App) -> tuple[dict[int, Any], set[Any]]:
    with app.sessions() as session:
        states = {
            e.id: (e.status, e.position, e.last_item_id, e.next_due_at)
            for e in session.scalars(select(Enrollment))
        }
        rows = {
            (d.key, d.item_id, d.step, d.status)
            for d in session.scalars(select(Delivery).where(Delivery.key.like("drip:%")))
        }
        for d in session.scalars(select(Delivery).where(Delivery.key.like("drip:%"))):
            assert (d.due_at, d.created_at, d.enrollment_id) == (NOW, NOW, int(d.key.split(":")[1]))
        # Stored in the form SQL comparisons expect (SQLite keeps datetimes as text).
        same = select(func.count()).select_from(Delivery).where(Delivery.key.like("drip:%"))
        assert session.scalar(
            same.where(Delivery.due_at == NOW, Delivery.updated_at <= NOW)
        ) == len(rows)
        for eid, (_, _, _, due) in states.items():
            if due is not None:
                found = (
                    select(func.count())
                    .select_from(Enrollment)
                    .where(Enrollment.id == eid, Enrollment.next_due_at == due)
                )
                assert session.scalar(found) == 1
    return states, rows


@pytest.mark.parametrize("grouped", [0, 10**6], ids=["rows-as-arrays", "one-statement-per-group"])
@pytest.mark.parametrize("batch_size", [7, 10_000], ids=["small-batches", "one-batch"])
def test_set_based_plan_equals_deciding_each_enrollment_alone(
    app: App, batch_size: int, grouped: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways of writing a batch (``GROUPED_WRITES``) give the reference's result."""
    monkeypatch.setattr(planner, "GROUPED_WRITES", grouped)
    inputs = generate(app, 400, seed=batch_size)
    want_states, want_rows = reference(app, inputs)
    report = plan_drips(app, NOW, batch_size=batch_size)
    got_states, got_rows = observed(app)
    assert got_states == want_states
    assert got_rows == want_rows
    outcomes = [s[0] for s in want_states.values()]
    assert report["stopped"] == outcomes.count("stopped")
    assert report["done"] == outcomes.count("done")
    assert report["planned"] == sum(1 for r in want_rows if r[3] == "queued")
    assert report["examples_skipped"] == sum(1 for r in want_rows if r[3] == "skipped")
    # Every kind of situation was generated, so the comparison covers each rule.
    assert {"stopped", "done", "active"} <= set(outcomes)
    assert report["deferred"] > 0
    assert report["examples_skipped"] > 0


def test_a_ledger_row_written_again_is_a_no_op_and_not_counted(app: App) -> None:
    """The batch insert counts only new keys: writing the same planned rows again (a
    planner that crashed after its insert, another planner) inserts and counts nothing."""
    inputs = generate(app, 30, seed=3)
    planned = [
        PlannedRow(eid, row["subscriber_id"], "tips/gentle-pressure", 2)
        for eid, row in inputs.items()
    ]
    skipped = [
        PlannedRow(eid, row["subscriber_id"], "testimonials/desk-worker", 5, "example content")
        for eid, row in inputs.items()
    ]
    with transaction(app.sessions) as session:
        assert insert_planned(session, planned[:10], now=NOW) == 10
        assert insert_planned(session, planned, now=NOW) == 20
        assert insert_planned(session, planned, now=NOW) == 0
        assert insert_planned(session, skipped, now=NOW) == 30
    with (
        pytest.raises(ValueError, match="one status per call"),
        transaction(app.sessions) as session,
    ):
        insert_planned(session, [planned[0], skipped[0]], now=NOW)
    _, rows = observed(app)
    assert len(rows) == 60
    assert {r[3] for r in rows if r[1] == "testimonials/desk-worker"} == {"skipped"}
    with app.sessions() as session:
        errors = set(session.scalars(select(Delivery.error).where(Delivery.key.like("drip:%"))))
    assert errors == {None, "example content"}


def test_the_decisive_items_are_every_step_and_rotation_candidate(app: App) -> None:
    """What a situation keeps of a subscriber's history: each item a decision can test."""
    catalog = Catalog.from_app(app)
    decisive = catalog.decisive_items()
    steps = {step.item_id for s in catalog.sequences.values() for step in s.steps}
    rotation = {item for items in catalog.pool.values() for item in items}
    assert set(decisive) == steps | rotation
    assert decisive == sorted(decisive)
    assert not set(NEWS) & set(decisive)


def test_the_history_lookup_reads_the_index_alone(app: App) -> None:
    """A batch's per-subscriber history (``kind`` and ``item_id`` of the subscriber's
    rows) comes from ``ix_deliveries_subscriber_item_kind`` without reading the ledger
    table: SQLite names it a covering index; PostgreSQL plans an index-only scan (table
    scans off, as the planner would choose on a table of millions of rows)."""
    generate(app, 5, seed=11)
    statement = planner._situations_sql  # the batch read the planner runs
    with transaction(app.sessions) as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        sql = statement(session)
        decisive = Catalog.from_app(app).decisive_items()
        params = {
            "now": NOW,
            "limit": 10,
            "sep": "\n",
            "decisive": decisive if postgres else json.dumps(decisive),
        }
        if postgres:
            session.execute(text("SET LOCAL enable_seqscan = off"))
            session.execute(text("SET LOCAL enable_bitmapscan = off"))
            explain = text("EXPLAIN " + sql.text).bindparams(*sql._bindparams.values())
            plan = "\n".join(session.scalars(explain, params))
            assert "Index Only Scan using ix_deliveries_subscriber_item_kind on deliveries d" in (
                plan
            ), plan
        else:
            explain = text("EXPLAIN QUERY PLAN " + sql.text).bindparams(*sql._bindparams.values())
            details = [row[-1] for row in session.execute(explain, params)]
            assert any(
                "d USING COVERING INDEX ix_deliveries_subscriber_item_kind" in d for d in details
            ), details


def test_a_group_insert_writes_only_the_keys_not_yet_in_the_ledger(app: App) -> None:
    """``insert_for_enrollments`` (one statement per group: ``NOT EXISTS`` on PostgreSQL,
    ``ON CONFLICT`` on SQLite) leaves out and does not count an enrollment whose key for
    the item is already written, and writes the others."""
    inputs = generate(app, 12, seed=5)
    ids = sorted(inputs)
    with transaction(app.sessions) as session:
        first = insert_planned(
            session,
            [
                PlannedRow(eid, inputs[eid]["subscriber_id"], "tips/gentle-pressure", 2)
                for eid in ids[:5]
            ],
            now=NOW,
        )
        again = insert_for_enrollments(
            session,
            IdList.of(ids),
            item_id="tips/gentle-pressure",
            step=2,
            skipped_reason=None,
            now=NOW,
        )
        twice = insert_for_enrollments(
            session,
            IdList.of(ids),
            item_id="tips/gentle-pressure",
            step=2,
            skipped_reason=None,
            now=NOW,
        )
    assert (first, again, twice) == (5, 7, 0)
    _, rows = observed(app)
    written = sorted(int(r[0].split(":")[1]) for r in rows if r[1] == "tips/gentle-pressure")
    assert written == ids


def test_a_ledger_insert_refused_for_another_reason_raises_and_writes_nothing(
    app: App,
) -> None:
    """Only a key already in the ledger is passed over: a row the database refuses for
    anything else (here an enrollment that does not exist) fails the whole insert, and its
    transaction leaves no row behind."""
    inputs = generate(app, 3, seed=7)
    eid = min(inputs)
    rows = [
        PlannedRow(eid, inputs[eid]["subscriber_id"], "tips/gentle-pressure", 2),
        PlannedRow(10**9, inputs[eid]["subscriber_id"], "tips/gentle-pressure", 2),
    ]
    with pytest.raises(IntegrityError), transaction(app.sessions) as session:
        insert_planned(session, rows, now=NOW)
    _, written = observed(app)
    assert written == set()
