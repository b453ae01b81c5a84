"""The outbox: one ``Delivery`` row per (event, recipient), written before any mail is sent.

Notifications are a projection of the event log. ``PlannedEvent`` marks the events already turned into
deliveries (also those that concern nobody), so planning is idempotent and never scans the whole log.

Kinds of delivery:
  event        one mail about one event, sent on its own
  digest_item  an event for a member who reads a daily digest; never sent on its own
  digest       the daily mail of one member; its items point to it through ``digest_id``
  message      a mail rendered when it was queued (a sign-in link): the row holds the message until it is
               sent or given up, then the message is wiped, so a secret in it does not rest in the outbox
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, String, UniqueConstraint, update
from sqlmodel import Field, Session, SQLModel, col, select

from models.db import utc_field


class DeliveryStatus(StrEnum):
    """Where a delivery stands.

    pending  not sent yet; tried again at ``next_attempt_at`` (``attempts`` counts the tries so far)
    sent     the server accepted it
    failed   transient errors until the retry budget ran out; can be queued again by hand
    dead     the server refused it permanently (5xx) for this recipient
    """

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"


class DeliveryKind(StrEnum):
    """What a delivery row stands for (see the module docstring)."""

    EVENT = "event"
    DIGEST_ITEM = "digest_item"
    DIGEST = "digest"
    MESSAGE = "message"


class Delivery(SQLModel, table=True):
    """A mail owed to a member: about one event, or their daily digest."""

    __table_args__ = (
        UniqueConstraint("event_id", "recipient", name="uq_delivery_event_recipient"),
        # Only digest rows carry a day, so this allows one digest per member and day.
        UniqueConstraint("recipient", "digest_day", name="uq_delivery_digest_day"),
        Index("ix_delivery_due", "kind", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: int | None = Field(default=None, foreign_key="event.id")
    recipient: str = Field(foreign_key="member.handle", max_length=40)
    email: str = Field(max_length=254)
    kind: str = Field(default=DeliveryKind.EVENT, sa_type=String(16))
    critical: bool = False
    status: str = Field(default=DeliveryStatus.PENDING, sa_type=String(16))
    attempts: int = 0
    next_attempt_at: dt.datetime = utc_field()
    last_error: str = Field(default="", max_length=500)
    # Assigned at the first attempt and kept for every retry, so a receiver can tell a repeat.
    message_id: str | None = Field(default=None, max_length=200, unique=True)
    created_at: dt.datetime = utc_field()
    sent_at: dt.datetime | None = utc_field(default=None)
    digest_id: int | None = Field(default=None, foreign_key="delivery.id", index=True)
    digest_day: dt.date | None = None
    # Only ``message`` rows: subject, text, html, language and expires_at (ISO) of the rendered mail.
    message: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))


class PlannedEvent(SQLModel, table=True):
    """An event whose deliveries have been planned (``deliveries`` may be 0)."""

    __tablename__ = "planned_event"

    event_id: int = Field(primary_key=True, foreign_key="event.id")
    planned_at: dt.datetime = utc_field()
    deliveries: int = 0


def wipe_messages(session: Session, *, now: dt.datetime) -> int:
    """Wipe the stored message of every ``message`` delivery that is settled, or still pending past its expiry.

    A pending one that expired is given up (``failed``): a sign-in link that arrives dead helps nobody.
    """
    kind = col(Delivery.kind) == DeliveryKind.MESSAGE
    held = col(Delivery.message).is_not(None)
    settled = session.execute(
        update(Delivery).where(kind, held, col(Delivery.status) != DeliveryStatus.PENDING)
        .values(message=None).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    expired = [
        d.id for d in session.exec(select(Delivery).where(kind, held, col(Delivery.status) == DeliveryStatus.PENDING))
        if d.message is None or dt.datetime.fromisoformat(str(d.message.get("expires_at", ""))) <= now
    ]
    if expired:
        session.execute(
            update(Delivery).where(col(Delivery.id).in_(expired), col(Delivery.status) == DeliveryStatus.PENDING)
            .values(message=None, status=DeliveryStatus.FAILED, last_error="expired before it could be sent")
            .execution_options(synchronize_session=False)
        )
    return int(settled) + len(expired)
