"""Read side of the attention rules: what ``campaign show`` counts."""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from newsletter.models import Delivery, DeliveryKind, DeliveryStatus

STALE_MARK = "NEWSLETTER_CAMPAIGN_STALE_HOURS"
OPTED_OUT_MARK = "opted out of topic"


def campaign_attention(session: Session, campaign_id: int) -> dict[str, int]:
    """``deferred`` (moved and still queued), ``stale`` and ``opted_out`` (skipped)."""
    skipped = Delivery.status == DeliveryStatus.SKIPPED.value
    row = session.execute(
        select(
            func.count(
                case(
                    (
                        (Delivery.status == DeliveryStatus.QUEUED.value)
                        & Delivery.deferred_from.is_not(None),
                        1,
                    )
                )
            ),
            func.count(case((skipped & Delivery.error.contains(STALE_MARK), 1))),
            func.count(case((skipped & Delivery.error.startswith(OPTED_OUT_MARK), 1))),
        ).where(Delivery.campaign_id == campaign_id, Delivery.kind == DeliveryKind.CAMPAIGN.value)
    ).one()
    return {"deferred": int(row[0]), "stale": int(row[1]), "opted_out": int(row[2])}
