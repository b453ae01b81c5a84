"""Queueing failed and dead deliveries again by hand, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine

from config.settings import Settings
from models import Lifecycle, session_scope
from models.errors import InvalidInputError, NotAllowedError, NotFoundError
from models.outbox import DeliveryKind, DeliveryStatus
from notifications import RetryPolicy, dispatch_once, retry_deliveries, send_pending
from tests.factories import CHAIR, T0, make_proposal
from tests.notifications.helpers import SmtpServer, deliveries, email_of, set_preference

LATER = T0 + dt.timedelta(days=1)


def _failed_and_dead(engine: Engine, lifecycle: Lifecycle, settings: Settings, server: SmtpServer) -> tuple[int, int, int]:
    """Submit a proposal: the chair's mail runs out of retries (451), sharma's is refused (550); ids of failed, dead, sent."""
    make_proposal(engine, lifecycle, state="in_review")
    server.handler.defer.add(email_of(engine, CHAIR))
    server.handler.refuse.add(email_of(engine, "sharma.anil"))
    policy = RetryPolicy(max_attempts=2)
    dispatch_once(engine, settings, lifecycle, now=T0)
    send_pending(engine, settings, lifecycle, now=T0 + dt.timedelta(hours=1), policy=policy)
    by_status = {r.status: r.id for r in deliveries(engine)}
    assert set(by_status) == {DeliveryStatus.FAILED, DeliveryStatus.DEAD, DeliveryStatus.SENT}
    return by_status[DeliveryStatus.FAILED], by_status[DeliveryStatus.DEAD], by_status[DeliveryStatus.SENT]


def _retry(engine: Engine, **kw: object) -> int:
    with session_scope(engine) as s:
        return retry_deliveries(s, now=LATER, **kw)  # type: ignore[arg-type]


def test_failed_and_dead_deliveries_go_back_in_the_queue_and_are_sent_once(
    forum: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    failed, dead, _ = _failed_and_dead(forum, lifecycle, settings, smtp_server)
    smtp_server.handler.defer.clear()
    smtp_server.handler.refuse.clear()

    first = _retry(forum)  # failed only, by default
    row = next(r for r in deliveries(forum) if r.id == failed)
    nothing = _retry(forum)
    dead_too = _retry(forum, status="dead")
    report = send_pending(forum, settings, lifecycle, now=LATER)

    assert (first, nothing, dead_too) == (1, 0, 1)
    assert (row.status, row.attempts, row.next_attempt_at) == (DeliveryStatus.PENDING, 0, LATER)
    assert "451" in row.last_error  # the last error stays visible until the next outcome
    assert report.sent == 2
    assert {r.status for r in deliveries(forum)} == {DeliveryStatus.SENT}
    assert len(smtp_server.to(email_of(forum, CHAIR))) == 1 and len(smtp_server.to(email_of(forum, "sharma.anil"))) == 1
    assert {r.attempts for r in deliveries(forum) if r.id in (failed, dead)} == {1}


def test_retry_by_id_is_all_or_nothing(
    forum: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    failed, dead, sent = _failed_and_dead(forum, lifecycle, settings, smtp_server)
    before = [(r.id, r.status, r.attempts) for r in deliveries(forum)]

    with pytest.raises(NotFoundError, match="no delivery with id 999"):
        _retry(forum, ids=[failed, 999])
    with pytest.raises(NotFoundError):
        _retry(forum, ids=[2**70])
    with pytest.raises(NotAllowedError, match=f"delivery {sent} is sent"):
        _retry(forum, ids=[dead, sent])
    with pytest.raises(NotAllowedError, match=f"delivery {dead} is dead; only failed"):
        _retry(forum, ids=[dead], status="failed")
    with pytest.raises(InvalidInputError):
        _retry(forum, status="sent")
    unchanged = [(r.id, r.status, r.attempts) for r in deliveries(forum)]
    both = _retry(forum, ids=[failed, dead])

    assert unchanged == before
    assert both == 2
    assert {r.status for r in deliveries(forum) if r.id in (failed, dead)} == {DeliveryStatus.PENDING}


def test_a_retried_digest_takes_its_items_along(
    forum: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    set_preference(forum, "petrov", "digest")
    make_proposal(forum, lifecycle, state="reviewed")
    smtp_server.handler.refuse.add(email_of(forum, "petrov"))
    morning = dt.datetime(2021, 3, 2, 2, 30, tzinfo=dt.UTC)
    dispatch_once(forum, settings, lifecycle, now=morning)
    digest = next(r for r in deliveries(forum) if r.kind == DeliveryKind.DIGEST)
    assert digest.status == DeliveryStatus.DEAD
    item = next(r for r in deliveries(forum) if r.kind == DeliveryKind.DIGEST_ITEM)
    smtp_server.handler.refuse.clear()

    with pytest.raises(NotAllowedError, match=f"part of the daily digest {digest.id}"):
        _retry(forum, ids=[item.id])  # type: ignore[list-item]
    queued = _retry(forum, ids=[digest.id])  # type: ignore[list-item]
    waiting = {r.kind: r.status for r in deliveries(forum) if r.recipient == "petrov"}
    send_pending(forum, settings, lifecycle, now=LATER)

    assert queued == 1 and waiting == {DeliveryKind.DIGEST: "pending", DeliveryKind.DIGEST_ITEM: "pending"}
    assert {r.status for r in deliveries(forum) if r.recipient == "petrov"} == {DeliveryStatus.SENT}
    assert len(smtp_server.to(email_of(forum, "petrov"))) == 1
