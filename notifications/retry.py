"""Putting failed or dead deliveries back in the queue by hand (``forumflow outbox retry``)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from sqlalchemy import update
from sqlmodel import Session, col, select

from models.errors import InvalidInputError, NotAllowedError, NotFoundError
from models.lifecycle import utc
from models.outbox import Delivery, DeliveryKind, DeliveryStatus

log = logging.getLogger(__name__)

RETRYABLE = (DeliveryStatus.FAILED.value, DeliveryStatus.DEAD.value)
_MAX_ID = 2**63 - 1


def retry_deliveries(session: Session, *, now: dt.datetime, status: str | None = None, ids: Sequence[int] = ()) -> int:
    """Queue deliveries again: pending, no attempts, due at ``now``; returns how many (a digest counts once).

    Without ``ids``: every delivery with ``status`` (default ``failed``). With ``ids``: exactly those, each of
    which must exist and be failed or dead (or ``status``, when given); otherwise nothing changes.
    """
    now = utc(now)
    if status is not None and status not in RETRYABLE:
        raise InvalidInputError(f"only failed or dead deliveries can be retried, not {status!r}")
    wanted = (status,) if status is not None else RETRYABLE if ids else (DeliveryStatus.FAILED.value,)
    if ids:
        rows = _named(session, ids)
        for row in rows:
            if row.kind == DeliveryKind.DIGEST_ITEM:
                raise NotAllowedError(f"delivery {row.id} is part of the daily digest {row.digest_id}: retry the digest")
            if row.status not in wanted:
                raise NotAllowedError(
                    f"delivery {row.id} is {row.status}; only {' or '.join(wanted)} deliveries can be retried"
                )
    else:
        rows = list(
            session.exec(
                select(Delivery).where(
                    col(Delivery.status).in_(wanted), col(Delivery.kind).in_([DeliveryKind.EVENT, DeliveryKind.DIGEST])
                )
            )
        )
    if not rows:
        return 0
    chosen = [r.id for r in rows]
    queued = len(
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(chosen), col(Delivery.status).in_(wanted))
            .values(status=DeliveryStatus.PENDING.value, attempts=0, next_attempt_at=now)
            .returning(col(Delivery.id))
            .execution_options(synchronize_session=False)
        ).all()
    )
    digests = [r.id for r in rows if r.kind == DeliveryKind.DIGEST]
    if digests:  # a digest's items follow it, as when it was settled
        session.execute(
            update(Delivery)
            .where(col(Delivery.digest_id).in_(digests))
            .values(status=DeliveryStatus.PENDING.value)
            .execution_options(synchronize_session=False)
        )
    log.info("queued %d deliveries again", queued)
    return queued


def _named(session: Session, ids: Sequence[int]) -> list[Delivery]:
    """The deliveries ``ids``, all of them, or NotFoundError naming those that do not exist."""
    wanted = sorted(set(ids))
    found = {
        d.id: d
        for d in session.exec(select(Delivery).where(col(Delivery.id).in_([i for i in wanted if 0 < i <= _MAX_ID])))
    }
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFoundError(f"no delivery with id {', '.join(map(str, missing))}")
    return [found[i] for i in wanted]
