"""Preferences: a daily digest that keeps coming day after day, and 'off' that still lets reminders through."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from config.settings import Settings
from models import Lifecycle, session_scope
from models.outbox import DeliveryKind, DeliveryStatus
from models.tables import Event
from notifications import dispatch_once
from tests.factories import AUTHOR, CHAIR, PRESIDING_HEAD, T0, make_proposal
from tests.notifications.helpers import SmtpServer, deliveries, email_of, notice, set_preference

# petrov lives in Yekaterinburg (UTC+5): his digest is due at 07:00 local, 02:00 UTC.
DAY1 = T0  # 2021-03-01 09:00 UTC
DAY2_MORNING = dt.datetime(2021, 3, 2, 2, 30, tzinfo=dt.UTC)
DAY3_MORNING = dt.datetime(2021, 3, 3, 2, 5, tzinfo=dt.UTC)


def subjects(server: SmtpServer, address: str) -> list[str]:
    return [r.message["Subject"] for r in server.to(address)]


def test_a_digest_comes_every_day_with_that_days_items(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    set_preference(db, "petrov", "digest")
    petrov = email_of(db, "petrov")
    make_proposal(db, lifecycle, state="reviewed", title="Grain corridor", now=DAY1)
    make_proposal(db, lifecycle, state="reviewed", title="Solar parks", now=DAY1)

    dispatch_once(db, settings, lifecycle, now=DAY1)
    night = dispatch_once(db, settings, lifecycle, now=dt.datetime(2021, 3, 1, 20, 0, tzinfo=dt.UTC))
    assert smtp_server.to(petrov) == [] and night.send.digests == 0

    morning = dispatch_once(db, settings, lifecycle, now=DAY2_MORNING)
    again = dispatch_once(db, settings, lifecycle, now=DAY2_MORNING + dt.timedelta(minutes=30))

    assert morning.send.digests == 1 and again.send.digests == 0 and again.send.attempted == 0
    (first,) = smtp_server.to(petrov)
    msg = first.message
    assert msg["Subject"] == "[sco-hrf] Ежедневная сводка за 2 марта 2021 г. (событий: 2)"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Grain corridor" in text and "Solar parks" in text and text.count("открыт раунд одобрения") == 2
    items = [d for d in deliveries(db) if d.recipient == "petrov" and d.kind == DeliveryKind.DIGEST_ITEM]
    assert len(items) == 2 and {d.status for d in items} == {DeliveryStatus.SENT}
    assert {d.sent_at for d in items} == {DAY2_MORNING}

    # Day two: one more proposal, and one event planned after this morning's digest went out.
    make_proposal(db, lifecycle, state="reviewed", title="Rail freight hub", now=DAY2_MORNING + dt.timedelta(hours=6))
    dispatch_once(db, settings, lifecycle, now=DAY2_MORNING + dt.timedelta(hours=7))
    assert len(smtp_server.to(petrov)) == 1

    dispatch_once(db, settings, lifecycle, now=DAY3_MORNING)

    assert len(smtp_server.to(petrov)) == 2
    second = smtp_server.to(petrov)[1].message
    assert second["Subject"] == "[sco-hrf] Ежедневная сводка за 3 марта 2021 г. (событий: 1)"
    assert "Rail freight hub" in second.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert second["Message-ID"] != msg["Message-ID"]
    digests = [d for d in deliveries(db) if d.kind == DeliveryKind.DIGEST]
    assert [(d.recipient, d.digest_day, d.status) for d in digests] == [
        ("petrov", dt.date(2021, 3, 2), DeliveryStatus.SENT),
        ("petrov", dt.date(2021, 3, 3), DeliveryStatus.SENT),
    ]


def test_reminders_reach_digest_and_off_members_at_once(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    set_preference(db, "petrov", "digest")
    set_preference(db, "li.ming", "off")
    pid = make_proposal(db, lifecycle, state="reviewed", now=DAY1)
    deadline = (DAY1 + dt.timedelta(days=21)).isoformat()
    notice(db, lifecycle, pid, "remind", now=DAY1, recipients=["petrov", "li.ming"], offset_days=7, deadline=deadline)

    dispatch_once(db, settings, lifecycle, now=DAY1)
    dispatch_once(db, settings, lifecycle, now=DAY3_MORNING)

    li = subjects(smtp_server, email_of(db, "li.ming"))
    petrov = subjects(smtp_server, email_of(db, "petrov"))
    assert li == ["[sco-hrf] 提醒：第1号提案《Joint agro-industrial park》须在2021年3月22日前处理"]
    assert petrov[0].startswith("[sco-hrf] Напоминание: №1")
    assert len(petrov) == 2 and "Ежедневная сводка" in petrov[1]  # the recommendation came in the digest
    assert not any(d.recipient == "li.ming" and not d.critical for d in deliveries(db))


# action -> the state the proposal is in, and who gets the notice (the first reads a digest, the second wants no mail)
CRITICAL_NOTICES = {
    "escalate": ("in_review", [CHAIR, PRESIDING_HEAD], {"level": 1, "deadline": DAY1.isoformat()}),
    "remind": ("reviewed", ["petrov", "li.ming"], {"offset_days": 7, "deadline": (DAY1 + dt.timedelta(days=21)).isoformat()}),
    "progress_due": ("implementing", [AUTHOR, CHAIR], {"due": DAY1.isoformat()}),
}


@pytest.mark.parametrize("action", sorted(CRITICAL_NOTICES))
def test_critical_notices_reach_digest_and_off_members_at_once(
    forum: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer, action: str
) -> None:
    state, (reads_digest, wants_none), payload = CRITICAL_NOTICES[action]
    set_preference(forum, reads_digest, "digest")
    set_preference(forum, wants_none, "off")
    pid = make_proposal(forum, lifecycle, state=state, now=DAY1)
    dispatch_once(forum, settings, lifecycle, now=DAY1)  # what came before the notice
    notice(forum, lifecycle, pid, action, now=DAY1, recipients=[reads_digest, wants_none], **payload)

    report = dispatch_once(forum, settings, lifecycle, now=DAY1)  # the same moment: no digest is due

    rows = [d for d in deliveries(forum) if d.event_id == _last_event(forum, pid)]
    assert sorted((d.recipient, d.kind, d.critical, d.status) for d in rows) == sorted(
        (h, DeliveryKind.EVENT, True, DeliveryStatus.SENT) for h in (reads_digest, wants_none)
    )
    assert report.send.digests == 0 and report.send.sent == 2
    for handle, row in ((h, next(d for d in rows if d.recipient == h)) for h in (reads_digest, wants_none)):
        (got,) = smtp_server.to(email_of(forum, handle))[-1:]
        assert got.message["Message-ID"] == row.message_id


def _last_event(engine: Engine, pid: int) -> int:
    with session_scope(engine) as s:
        return max(s.exec(select(Event.id).where(Event.proposal_id == pid)))  # type: ignore[arg-type]


def test_a_digest_waits_for_a_server_that_is_down(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    set_preference(db, "petrov", "digest")
    make_proposal(db, lifecycle, state="reviewed", now=DAY1)
    dispatch_once(db, settings, lifecycle, now=DAY1)
    smtp_server.stop()

    down = dispatch_once(db, settings, lifecycle, now=DAY2_MORNING)
    digest = next(d for d in deliveries(db) if d.kind == DeliveryKind.DIGEST)
    smtp_server.start()
    up = dispatch_once(db, settings, lifecycle, now=DAY2_MORNING + dt.timedelta(minutes=5))

    assert down.send.digests == 1 and down.send.sent == 0
    assert digest.status == DeliveryStatus.PENDING and digest.attempts == 0 and "connect" in digest.last_error  # not counted
    assert up.send.digests == 0 and up.send.sent == 1
    assert len(smtp_server.to(email_of(db, "petrov"))) == 1
