"""Deliver what is due: claim a batch, render, hand chunks to the mailer, record outcomes.

Commits per batch: one for the claim, one per chunk (marks the chunk ``sending``, stores
its new nonces and tracked links, and records the previous chunk's outcomes, or for the
first chunk the emails that could not be built), one at the end. The emails are built
between the claim's commit and the first chunk, holding no lock: SQLite's one writer
stays free for signups while a batch renders; an error while building gives the batch
back to the queue.

A batch stops early, giving the chunks not yet handed over back to the queue untouched,
when the provider asks to wait (``Retry-After`` on 429/5xx: a provider-wide backoff that
every worker honours, ``newsletter.send_backoff``), refuses our credentials (a halt), or
the mailer fails unexpectedly (the chunk in flight becomes ``unknown``, logged at ERROR).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.attention.claims import attention_for
from newsletter.backoff import bounded_wait
from newsletter.bounces.apply import apply_bounces, refusal_facts
from newsletter.bounces.verp import verp_address
from newsletter.bound_lists import in_list
from newsletter.compose import (
    Sender,
    compose,
    confirm_url,
    keep_url,
    preferences_url,
    unsubscribe_url,
)
from newsletter.content.batch import RenderPlan, group_key, recipient_values
from newsletter.content.library import ContentLibrary
from newsletter.content.model import (
    NO_EVENT,
    EventContext,
    Links,
    RenderedEmail,
    SubscriberContext,
)
from newsletter.db import transaction
from newsletter.delivery.base import (
    BatchAuthError,
    OutgoingEmail,
    SendResult,
    SendStatus,
    Skeleton,
)
from newsletter.delivery.checks import message_problem
from newsletter.delivery.personalization import apply_substitutions
from newsletter.errors import ContentError, ProviderAuthError, SendingHaltedError
from newsletter.ledger import (
    Claimed,
    claim_batch,
    mark_sending,
    record_results,
    release,
    skip_withdrawn,
    still_leased,
)
from newsletter.models import Campaign, DeliveryKind, Enrollment, Subscriber
from newsletter.one_line import one_line
from newsletter.send_backoff import backoff_until, set_backoff
from newsletter.sending_halt import halt_reason, key_fingerprint, set_halt
from newsletter.tokens import make_confirm_token, make_keep_token, make_unsubscribe_token
from newsletter.tracking.outgoing import store_links, track_email_personal, tracking_on

log = logging.getLogger(__name__)

SAMPLE = SubscriberContext(email="sample@example.com", first_name="Alex")


@dataclass
class DispatchReport:
    claimed: int = 0
    commits: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    # Set when the provider asked every worker to wait: nothing is claimed before it.
    backoff_until: datetime | None = None
    # Claimed, then withdrawn (unsubscribed, suppressed ...) before their chunk went out.
    skipped: int = 0

    def add(self, results: Sequence[SendResult]) -> None:
        for r in results:
            self.outcomes[r.status.value] = self.outcomes.get(r.status.value, 0) + 1


def sending_fingerprint(app: App) -> str:
    """Which credentials a halt belongs to: a changed key lifts it."""
    return key_fingerprint(app.settings.sendgrid_api_key or app.settings.smtp_url or "outbox")


def deliver_due(
    app: App,
    *,
    now: datetime,
    worker: str = "worker",
    limit: int | None = None,
    kinds: Sequence[DeliveryKind] | None = None,
) -> DispatchReport:
    """One batch. Raises ``SendingHaltedError`` when sending is halted.

    Claims nothing while a provider backoff is in force (``report.backoff_until``).

    Without ``NEWSLETTER_POSTAL_ADDRESS`` only transactional email (the confirmation) is
    claimed: marketing email waits, queued, until the address is set (it is required in
    every marketing footer), instead of failing.
    """
    report = DispatchReport()
    if not app.settings.postal_address:
        if kinds is not None and DeliveryKind.CONFIRMATION not in kinds:
            return report
        if kinds is None:
            log.warning("NEWSLETTER_POSTAL_ADDRESS is not set: marketing email waits until it is")
        kinds = [DeliveryKind.CONFIRMATION]
    # Before the transaction: the first call in a process builds the policy from the
    # content library (~0.3 s), which must not hold SQLite's writer.
    attention = attention_for(app)
    with transaction(app.sessions) as session:
        reason = halt_reason(session, fingerprint=sending_fingerprint(app))
        if reason is not None:
            raise SendingHaltedError(reason)
        backoff = backoff_until(session, now=now)
        if backoff is not None:
            report.backoff_until = backoff[0]
            log.info("provider backoff until %s: %s", backoff[0].isoformat(), backoff[1])
            return report
        rows = claim_batch(
            session,
            worker=worker,
            limit=limit or app.settings.batch_size,
            now=now,
            lease=timedelta(seconds=app.settings.lease_seconds),
            kinds=kinds,
            attention=attention,
        )
        if not rows:
            report.commits += 1
            return report
        facts = _read_facts(session, rows)
    report.commits += 1
    report.claimed = len(rows)
    # Built after the claim commits: the claim's locks (SQLite's one writer, the
    # subscriber rows PostgreSQL's cap decision locks) are not held while a thousand
    # emails are rendered. What building must store (nonces, tracked links) is written
    # with each chunk's ``sending`` mark, for the rows this worker still owns.
    try:
        built = _build_messages(app, facts, rows, now=now)
    except BaseException:
        # Nothing was handed over: the rows go back to the queue at once, as the claim's
        # rollback did when the build ran inside it (not after the lease runs out).
        with transaction(app.sessions) as session:
            release(session, [r.id for r in rows], now=now, worker=worker)
        raise
    messages = built.messages
    # The emails that cannot be built or sent are recorded with the first chunk (or at the
    # end), only on rows this worker still holds: with the claim committed, a lease can
    # run out during the build and another worker take the row.
    pending: list[SendResult] = list(built.failures)
    unchecked = bool(pending)
    chunk_size = max(1, int(getattr(app.mailer, "max_batch", 100)))
    chunks = [messages[i : i + chunk_size] for i in range(0, len(messages), chunk_size)]
    lease = timedelta(seconds=app.settings.lease_seconds)
    started = time.monotonic()
    rest: list[OutgoingEmail] = []  # not handed over when the batch stops early
    for index, chunk in enumerate(chunks):
        # SEND_RATE: reserve capacity across workers and wait before marking the chunk
        # ``sending`` (rows still ``leased`` are safe to lose to an expired lease).
        wait = app.send_limiter.acquire(len(chunk), now=app.clock())
        if wait > 0:
            app.sleep(wait)
        # ``now`` is the run's logical time; the lease is renewed by the real time elapsed
        # so a long batch (slow SMTP) keeps its rows until they are handed over.
        moment = now + timedelta(seconds=time.monotonic() - started)
        with transaction(app.sessions) as session:
            if unchecked:
                pending, unchecked = _still_held(session, pending, worker), False
            record_results(session, pending, now=now, max_attempts=app.settings.max_attempts)
            apply_bounces(session, refusal_facts(pending), now=now)
            ids = [m.delivery_id for m in chunk]
            # Re-checked here, not only at claim: an unsubscribe that commits before this
            # chunk is marked ``sending`` stops its email.
            withdrawn = set(skip_withdrawn(session, ids, now=now))
            renewed = lease + (moment - now)
            owned = set(
                mark_sending(
                    session, ids, now=now, worker=worker, lease=renewed, nonces=built.nonces
                )
            )
            built.store_links(session, owned)
        report.commits += 1
        report.add(pending)
        if withdrawn:
            report.skipped += len(withdrawn)
            report.outcomes["skipped"] = report.outcomes.get("skipped", 0) + len(withdrawn)
            log.info("%d deliveries skipped: withdrawn after the claim", len(withdrawn))
            chunk = [m for m in chunk if m.delivery_id not in withdrawn]
        lost = len(chunk) - len(owned)
        if lost:
            log.warning(
                "%d deliveries lost their lease before sending; another worker has them", lost
            )
            chunk = [m for m in chunk if m.delivery_id in owned]
        later = [m for c in chunks[index + 1 :] for m in c]
        try:
            pending = app.mailer.send_batch(chunk) if chunk else []
        except ProviderAuthError as exc:
            _halt(app, exc, chunk + later, report, now=now, worker=worker)
            raise SendingHaltedError(str(exc)) from exc
        except Exception as exc:
            # A bug or an unexpected SDK error: the chunk may or may not have reached the
            # provider, so it becomes ``unknown`` (never resent automatically); the rest
            # of the batch goes back to the queue and the job carries on.
            log.error(
                "the %s mailer failed on %d emails (ids %s); they are marked unknown",
                app.mailer.name,
                len(chunk),
                [m.delivery_id for m in chunk],
                exc_info=True,
            )
            error = f"mailer error, may or may not have been sent: {exc!r}"[:1000]
            pending = [SendResult(m.delivery_id, SendStatus.UNKNOWN, error=error) for m in chunk]
            rest = later
            break
        pause = _provider_pause(pending)
        if pause is not None:
            report.backoff_until = now + timedelta(seconds=pause)
            rest = later
            break
    with transaction(app.sessions) as session:
        if unchecked:
            pending = _still_held(session, pending, worker)
        record_results(session, pending, now=now, max_attempts=app.settings.max_attempts)
        apply_bounces(session, refusal_facts(pending), now=now)
        release(session, [m.delivery_id for m in rest], now=now, worker=worker)
        if report.backoff_until is not None:
            reason = next((r.error for r in pending if r.retry_after is not None), None)
            set_backoff(session, report.backoff_until, reason=reason or "", now=now)
    report.commits += 1
    report.add(pending)
    if report.backoff_until is not None:
        log.warning(
            "%s asked to wait: no email is claimed before %s",
            app.mailer.name,
            report.backoff_until.isoformat(),
        )
    return report


def _still_held(session: Session, results: list[SendResult], worker: str) -> list[SendResult]:
    """The results whose rows ``worker`` still holds ``leased``."""
    held = set(still_leased(session, [r.delivery_id for r in results], worker))
    return [r for r in results if r.delivery_id in held]


def _provider_pause(results: Sequence[SendResult]) -> float | None:
    """Seconds the provider asked us to wait (429/5xx ``Retry-After``), if it did."""
    waits = [
        r.retry_after
        for r in results
        if r.retry_after is not None and r.status in (SendStatus.RETRY, SendStatus.NOT_ATTEMPTED)
    ]
    return bounded_wait(max(waits)) if waits else None


def _halt(
    app: App,
    exc: ProviderAuthError,
    untouched: Sequence[OutgoingEmail],
    report: DispatchReport,
    *,
    now: datetime,
    worker: str,
) -> None:
    """Record what the provider already had, give the rest back, halt sending."""
    known = exc.results if isinstance(exc, BatchAuthError) else ()
    recorded = [r for r in known if r is not None]
    done = {r.delivery_id for r in recorded}
    with transaction(app.sessions) as session:
        record_results(session, recorded, now=now, max_attempts=app.settings.max_attempts)
        ids = [m.delivery_id for m in untouched if m.delivery_id not in done]
        release(session, ids, now=now, worker=worker)
        set_halt(session, str(exc), fingerprint=sending_fingerprint(app), now=now)
    report.commits += 1
    report.add(recorded)
    log.critical("sending halted: %s", exc)


@dataclass(frozen=True)
class _Facts:
    """What building a claimed batch reads from the database (in the claim's
    transaction, so it is the claim's view): columns, never ORM objects."""

    subscribers: dict[int, Any]
    sequences: dict[int, str]
    events: dict[int, EventContext]
    campaigns: dict[int, str]


def _read_facts(session: Session, rows: Sequence[Claimed]) -> _Facts:
    sub_ids = {r.subscriber_id for r in rows if r.subscriber_id is not None}
    # Columns, not ORM objects: only read here, and a thousand objects cost more than
    # the rendering.
    subscribers = {
        s.id: s
        for s in session.connection().execute(
            select(
                Subscriber.id,
                Subscriber.public_id,
                Subscriber.email,
                Subscriber.first_name,
                Subscriber.timezone,
                Subscriber.tags,
                Subscriber.attributes,
            ).where(in_list(session, Subscriber.id, sub_ids))
        )
    }
    enr_ids = {r.enrollment_id for r in rows if r.enrollment_id is not None}
    enrollment_rows = (
        session.connection()
        .execute(
            select(Enrollment.id, Enrollment.sequence, Enrollment.event).where(
                in_list(session, Enrollment.id, enr_ids)
            )
        )
        .all()
    )
    camp_ids = {r.campaign_id for r in rows if r.campaign_id is not None}
    campaigns = dict(
        session.connection()
        .execute(select(Campaign.id, Campaign.name).where(in_list(session, Campaign.id, camp_ids)))
        .all()
    )
    return _Facts(
        subscribers=subscribers,
        sequences={row.id: row.sequence for row in enrollment_rows},
        events={row.id: _event_context(row.event) for row in enrollment_rows if row.event},
        campaigns=campaigns,
    )


@dataclass
class _Built:
    """A claimed batch's emails, those that cannot be sent, and what must be stored
    before an email is handed over: the nonce of a row that had none (its Message-ID)
    and, with tracking, its original links."""

    messages: list[OutgoingEmail] = field(default_factory=list)
    failures: list[SendResult] = field(default_factory=list)
    nonces: dict[int, str] = field(default_factory=dict)
    links: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def store_links(self, session: Session, owned: set[int]) -> None:
        """Write the links of the rows in ``owned`` (just marked ``sending`` by this
        worker, with their nonces, in the caller's transaction): never those of a row
        whose lease ran out and that another worker may have claimed."""
        links = {i: self.links[i] for i in sorted(owned) if i in self.links}
        if links:
            store_links(session, links)


# The kinds as the rows hold them (an enum member's ``.value`` is a descriptor call, and
# the build tests a row's kind several times).
_TEST, _CONFIRMATION, _REPERMISSION, _DRIP, _CAMPAIGN = (
    kind.value
    for kind in (
        DeliveryKind.TEST,
        DeliveryKind.CONFIRMATION,
        DeliveryKind.REPERMISSION,
        DeliveryKind.DRIP,
        DeliveryKind.CAMPAIGN,
    )
)


def _build_messages(app: App, facts: _Facts, rows: Sequence[Claimed], *, now: datetime) -> _Built:
    """Render, compose and check every claimed row (no database: ``facts`` holds what
    the claim read)."""
    settings = app.settings
    sender = Sender(
        from_email=settings.from_email,
        from_name=settings.from_name,
        reply_to=settings.reply_to or None,
        base_url=settings.base_url,
    )
    subscribers, sequences = facts.subscribers, facts.sequences
    events, campaigns = facts.events, facts.campaigns
    keys = settings.secret_keys
    planner = BatchRenderer(app.library)
    tracks = tracking_on(settings)
    built = _Built()
    messages, failures = built.messages, built.failures
    subjects: dict[int, str] = {}  # id(plan) -> its subject as compose makes it one line
    mailer_check = getattr(app.mailer, "problem", None)
    fresh = _fresh_nonces(sum(1 for row in rows if row.message_nonce is None))
    for row in rows:
        subscriber = subscribers.get(row.subscriber_id) if row.subscriber_id else None
        if row.kind == _TEST or subscriber is None:
            recipient = SubscriberContext(
                email=row.to_email or SAMPLE.email,
                first_name=SAMPLE.first_name,
                timezone=settings.default_timezone,
            )
            links = Links(unsubscribe=f"{settings.base_url}/unsubscribe/test-send")
        else:
            recipient = SubscriberContext(
                email=subscriber.email,
                first_name=subscriber.first_name,
                timezone=subscriber.timezone,
                tags=tuple(subscriber.tags or ()),
                attributes=dict(subscriber.attributes or {}),
            )
            # One token for both links: the preference centre's credential is the
            # unsubscribe token (signing is deterministic: the same token either way).
            unsubscribe_token = make_unsubscribe_token(subscriber.public_id, keys=keys)
            unsub = unsubscribe_url(settings.base_url, unsubscribe_token, delivery_id=row.id)
            confirm = None
            if row.kind == _CONFIRMATION:
                token = make_confirm_token(subscriber.public_id, keys=keys, now=row.created_at)
                confirm = confirm_url(settings.base_url, token)
            keep = None
            if row.kind == _REPERMISSION:
                keep = keep_url(settings.base_url, make_keep_token(subscriber.public_id, keys=keys))
            preferences = None
            if row.kind != _CONFIRMATION:
                preferences = preferences_url(settings.base_url, unsubscribe_token)
            links = Links(unsubscribe=unsub, confirm=confirm, keep=keep, preferences=preferences)
        categories = _categories(row, sequences, campaigns)
        event = events.get(row.enrollment_id, NO_EVENT) if row.enrollment_id else NO_EVENT
        planned: tuple[RenderPlan, dict[str, str]] | None = None
        try:
            if row.kind != _TEST and subscriber is not None and not tracks:
                rendered, planned = planner.render(row.item_id, recipient, links, event)
            else:
                rendered = app.library.render(row.item_id, recipient, links, event)
        except ContentError as exc:
            failures.append(SendResult(row.id, SendStatus.FAILED, error=f"render: {exc}"))
            continue
        tracking: dict[str, str] = {}
        if row.kind != _TEST and subscriber is not None:
            rendered, tracked, tracking = track_email_personal(
                rendered, delivery_id=row.id, links=links, settings=settings
            )
            if tracks:
                built.links[row.id] = tuple(tracked)
        skeleton = None
        if planned is not None:
            skeleton = _skeleton(one_line(rendered.subject), *planned, subjects)
        nonce = row.message_nonce
        if nonce is None:
            # Stored by the chunk's ``sending`` mark (``ledger.mark_sending``).
            nonce = next(fresh)
            row.message_nonce = nonce
            built.nonces[row.id] = nonce
        message = compose(
            rendered,
            delivery_id=row.id,
            attempt=row.attempts,
            recipient=recipient,
            links=links,
            sender=sender,
            nonce=nonce,
            now=now,
            categories=categories,
            event=event,
            subject_prefix="[TEST] " if row.kind == _TEST else "",
            return_path=verp_address(settings.bounce_address, row.id)
            if settings.bounce_address
            else None,
            tracking=tracking,
            skeleton=skeleton,
        )
        problem = _problem(message, mailer_check)
        if problem is not None:
            log.warning("delivery %d cannot be sent: %s", row.id, problem)
            failures.append(SendResult(row.id, SendStatus.FAILED, error=problem[:1000]))
            continue
        messages.append(message)
    return built


NONCE_BYTES = 8  # a Message-ID's random part: 16 hex digits


def _fresh_nonces(count: int) -> Iterator[str]:
    """``count`` nonces, each ``NONCE_BYTES`` random bytes in hex (what
    ``secrets.token_hex(NONCE_BYTES)`` gives), cut from one read of the system's random
    source instead of one read per email."""
    pool = secrets.token_hex(NONCE_BYTES * count)
    width = 2 * NONCE_BYTES
    return (pool[i : i + width] for i in range(0, len(pool), width))


class BatchRenderer:
    """Renders the emails of one batch: once per group of recipients that can share a
    render plan (``newsletter.content.batch``), each recipient by substitution.

    The first recipient of every group is also rendered alone, and the group's plan is
    used only if it gives exactly that email; a recipient whose values a plan cannot take
    (``batch.usable``), and every recipient of an item that cannot be planned, is
    rendered alone.
    """

    def __init__(self, library: ContentLibrary) -> None:
        self._library = library
        self._plans: dict[tuple[object, ...], RenderPlan | None] = {}

    def render(
        self, item_id: str, recipient: SubscriberContext, links: Links, event: EventContext
    ) -> tuple[RenderedEmail, tuple[RenderPlan, dict[str, str]] | None]:
        """The email, and the plan with this recipient's substitutions when one made it.

        Raises ``ContentError`` as ``ContentLibrary.render`` does.
        """
        key = group_key(item_id, recipient, links, event)
        values = recipient_values(recipient, links)
        plan = self._plans.get(key)
        if plan is not None:
            substitutions = plan.substitutions(values)
            if substitutions is not None:
                return plan.render(substitutions), (plan, substitutions)
        alone = self._library.render(item_id, recipient, links, event)
        if key not in self._plans:
            self._plans[key] = self._witnessed(item_id, recipient, links, event, values, alone)
        return alone, None

    def _witnessed(
        self,
        item_id: str,
        recipient: SubscriberContext,
        links: Links,
        event: EventContext,
        values: dict[str, str],
        alone: RenderedEmail,
    ) -> RenderPlan | None:
        """The group's plan if it reproduces ``alone`` (this recipient rendered alone)."""
        try:
            plan = self._library.plan(item_id, recipient, links, event)
        except ContentError:
            return None
        if plan is None:
            return None
        substitutions = plan.substitutions(values)
        if substitutions is None:
            return None
        if plan.render(substitutions) != alone:
            log.warning("%s: the batch render plan differs from rendering alone", item_id)
            return None
        return plan


def _skeleton(
    subject: str,
    plan: RenderPlan,
    substitutions: dict[str, str],
    subjects: dict[int, str],
) -> Skeleton | None:
    """The plan as the SendGrid skeleton of an email whose one-line subject (as
    ``compose`` makes it) is ``subject``, or ``None``: its html and text are the plan's
    with ``substitutions``; the subject went through ``one_line``, so the skeleton's is
    checked (planned emails have no subject prefix). ``subjects`` keeps each plan's
    one-line subject for the batch (the plans outlive it)."""
    planned = subjects.get(id(plan))
    if planned is None:
        planned = subjects[id(plan)] = one_line(plan.subject)
    if apply_substitutions(planned, substitutions) != subject:
        return None
    return Skeleton(planned, plan.html, plan.text, tuple(sorted(substitutions.items())))


def _problem(message: OutgoingEmail, check: object) -> str | None:
    """Why ``message`` cannot be handed to this mailer (checked before its chunk is);
    ``check`` is the mailer's own ``problem``, if it has one."""
    problem = message_problem(message)
    if problem is None and callable(check):
        found = check(message)
        problem = found if isinstance(found, str) else None
    return None if problem is None else f"not sendable: {problem}"


def _categories(
    row: Claimed, sequences: dict[int, str], campaigns: dict[int, str]
) -> tuple[str, ...]:
    if row.kind == _DRIP and row.enrollment_id in sequences:
        return (f"sequence:{sequences[row.enrollment_id]}", f"item:{row.item_id}")
    if row.kind == _CAMPAIGN and row.campaign_id in campaigns:
        return (f"campaign:{campaigns[row.campaign_id]}",)
    return (row.kind,)


def _event_context(stored: dict[str, object]) -> EventContext:
    """The ``event`` templates see, from ``enrollments.event``."""
    properties = stored.get("properties")
    return EventContext(
        name=str(stored.get("name") or ""),
        id=str(stored.get("id") or ""),
        properties=dict(properties) if isinstance(properties, dict) else {},
    )
