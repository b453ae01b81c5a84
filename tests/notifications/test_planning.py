"""Planning: who hears about what, idempotently, following preferences and the definition's overrides."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from config.definition import ForumDefinition
from models import Lifecycle, session_scope
from models.outbox import Delivery, DeliveryKind, PlannedEvent
from models.tables import Event
from notifications import plan_deliveries
from notifications.planning import Directory, digest_due
from notifications.recipients import RecipientRules
from tests.factories import AUTHOR, CHAIR, PRESIDING_HEAD, T0, make_proposal
from tests.notifications.helpers import deliveries, notice, set_preference

HEADS = {
    "wang.jianguo", "li.ming", "deshmukh", "patel", "seitkazieva", "nurlanov", "toktogulov", "abdykadyrova",
    "khan.ayesha", "yousafzai", "petrov", "sokolova", "rakhimov", "saidova", "karimov", "yusupova",
}


def plan(engine: Engine, lifecycle: Lifecycle, now: dt.datetime = T0) -> int:
    with session_scope(engine) as s:
        return plan_deliveries(s, lifecycle, now=now)


def recipients_of(engine: Engine, action: str) -> set[str]:
    with session_scope(engine) as s:
        ids = set(s.exec(select(Event.id).where(Event.action == action)))
    return {d.recipient for d in deliveries(engine) if d.event_id in ids}


def test_planning_twice_creates_nothing_new(forum: Engine, lifecycle: Lifecycle) -> None:
    make_proposal(forum, lifecycle, state="reviewed")

    first = plan(forum, lifecycle)
    second = plan(forum, lifecycle, T0 + dt.timedelta(hours=1))

    assert first == 3 + 1 + 16 and second == 0
    assert len(deliveries(forum)) == first
    with session_scope(forum) as s:
        marks = {m.event_id: m.deliveries for m in s.exec(select(PlannedEvent))}
    assert sorted(marks.values()) == [0, 3, 17]  # the draft's create event concerns nobody, and is marked too


def test_an_event_recipient_pair_is_unique(forum: Engine, lifecycle: Lifecycle) -> None:
    make_proposal(forum, lifecycle, state="in_review")
    plan(forum, lifecycle)
    row = deliveries(forum)[0]

    with pytest.raises(IntegrityError), session_scope(forum) as s:
        s.add(Delivery(event_id=row.event_id, recipient=row.recipient, email=row.email, next_attempt_at=T0, created_at=T0))


def test_two_runs_planning_the_same_events_at_once_make_each_delivery_once(
    forum: Engine, lifecycle: Lifecycle, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    make_proposal(forum, lifecycle, state="reviewed")
    make_proposal(forum, lifecycle, state="in_review", title="Solar parks")
    # Both runs have read the same unplanned events before either writes: the race, every time.
    both_read = threading.Barrier(2, timeout=30)
    load = Directory.load.__func__  # type: ignore[attr-defined]

    def load_after_both_read(cls: type[Directory], session: Any, *args: Any, **kwargs: Any) -> Directory:
        both_read.wait()
        return load(cls, session, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(Directory, "load", classmethod(load_after_both_read))
    created: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            created.append(plan(forum, lifecycle))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    with caplog.at_level(logging.INFO, logger="notifications.planning"):
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert sorted(created) == [0, 20 + 3]  # the loser made nothing and raised nothing
    rows = deliveries(forum)
    assert len(rows) == 23 and len({(r.event_id, r.recipient) for r in rows}) == 23
    with session_scope(forum) as s:
        assert len(list(s.exec(select(PlannedEvent)))) == len(list(s.exec(select(Event))))
    assert "another run planned" in caplog.text


def test_new_events_are_planned_on_the_next_run(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    plan(forum, lifecycle)
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "return", CHAIR, comment="Please add the budget", now=T0)

    assert plan(forum, lifecycle) == 1
    assert recipients_of(forum, "return") == {AUTHOR}


def test_default_rules(forum: Engine, lifecycle: Lifecycle) -> None:
    make_proposal(forum, lifecycle, state="implementing")
    plan(forum, lifecycle)

    assert recipients_of(forum, "submit") == {"kuznetsov", "nurlanova", "sharma.anil"}  # not the author who submitted
    assert recipients_of(forum, "recommend") == HEADS | {AUTHOR}
    assert recipients_of(forum, "endorse") == {AUTHOR, CHAIR}
    assert recipients_of(forum, "consensus") == HEADS | {AUTHOR, CHAIR}  # the presiding head is a head too
    assert recipients_of(forum, "approve") == (HEADS | {AUTHOR, "kuznetsov", "nurlanova", "sharma.anil"}) - {PRESIDING_HEAD}


def test_the_definition_overrides_a_rule(forum: Engine, definition: ForumDefinition) -> None:
    custom = definition.model_copy(update={"notifications": {"submit": ["secretariat", "@petrov"], "recommend": []}})
    lifecycle = Lifecycle(custom)
    make_proposal(forum, lifecycle, state="reviewed")

    plan(forum, lifecycle)

    assert recipients_of(forum, "submit") == {"secretariat", "petrov"}
    assert recipients_of(forum, "recommend") == set()
    assert RecipientRules(custom).rule("approve") == ("author", "group_members", "heads_of_region")


def test_a_reminder_reaches_only_those_who_must_still_act(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "endorse", "wang.jianguo", now=T0)  # China has endorsed: li.ming need not act
        lifecycle.apply(s, pid, "endorse", "deshmukh", now=T0)
    deadline = (T0 + dt.timedelta(days=21)).isoformat()
    # The review chose its recipients before the endorsements above were planned.
    notice(forum, lifecycle, pid, "remind", now=T0, recipients=["petrov", "li.ming", "deshmukh", "patel"],
           offset_days=7, deadline=deadline)

    plan(forum, lifecycle)

    assert recipients_of(forum, "remind") == {"petrov"}
    remind = [d for d in deliveries(forum) if d.recipient == "petrov" and d.critical]
    assert len(remind) == 1 and remind[0].kind == DeliveryKind.EVENT


def test_a_notice_for_a_state_that_was_left_reaches_nobody(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    notice(forum, lifecycle, pid, "remind", now=T0, recipients=[CHAIR], offset_days=7, deadline=T0.isoformat())
    notice(forum, lifecycle, pid, "escalate", now=T0, recipients=[CHAIR], level=1, deadline=T0.isoformat())
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "recommend", CHAIR, now=T0 + dt.timedelta(minutes=5))

    plan(forum, lifecycle, T0 + dt.timedelta(minutes=10))

    assert recipients_of(forum, "remind") == set() and recipients_of(forum, "escalate") == set()


def test_escalation_and_handover_go_to_exactly_the_named_people(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="endorsed")
    notice(forum, lifecycle, pid, "escalate", now=T0, recipients=[PRESIDING_HEAD], level=2, deadline=T0.isoformat())
    notice(forum, lifecycle, pid, "handover", now=T0, recipients=["karimov"], from_region="RU-CHE", to_region="UZ-SA")

    plan(forum, lifecycle)

    assert recipients_of(forum, "escalate") == {PRESIDING_HEAD}
    assert recipients_of(forum, "handover") == {"karimov"}


def test_preferences_digest_and_off(forum: Engine, lifecycle: Lifecycle) -> None:
    set_preference(forum, "petrov", "digest")
    set_preference(forum, "li.ming", "off")
    pid = make_proposal(forum, lifecycle, state="reviewed")
    notice(forum, lifecycle, pid, "remind", now=T0, recipients=["petrov", "li.ming"], offset_days=7, deadline=T0.isoformat())

    plan(forum, lifecycle)

    rows = {(d.recipient, d.kind, d.critical) for d in deliveries(forum) if d.recipient in ("petrov", "li.ming")}
    assert rows == {
        ("petrov", DeliveryKind.DIGEST_ITEM, False),  # the recommendation waits for the digest
        ("petrov", DeliveryKind.EVENT, True),  # the reminder goes at once
        ("li.ming", DeliveryKind.EVENT, True),  # off, but reminders always go
    }
    item = next(d for d in deliveries(forum) if d.kind == DeliveryKind.DIGEST_ITEM)
    assert item.next_attempt_at == dt.datetime(2021, 3, 2, 2, 0, tzinfo=dt.UTC)  # 07:00 in Yekaterinburg


@pytest.mark.parametrize(
    ("at", "due"),
    [
        (dt.datetime(2021, 3, 1, 1, 0, tzinfo=dt.UTC), dt.datetime(2021, 3, 1, 2, 0, tzinfo=dt.UTC)),  # 06:00 local: today
        (dt.datetime(2021, 3, 1, 2, 0, tzinfo=dt.UTC), dt.datetime(2021, 3, 2, 2, 0, tzinfo=dt.UTC)),  # 07:00 local: tomorrow
        (dt.datetime(2021, 3, 1, 20, 0, tzinfo=dt.UTC), dt.datetime(2021, 3, 2, 2, 0, tzinfo=dt.UTC)),  # 01:00 next day
    ],
)
def test_digest_due_is_the_next_morning_in_the_members_zone(at: dt.datetime, due: dt.datetime) -> None:
    from zoneinfo import ZoneInfo

    assert digest_due(at, ZoneInfo("Asia/Yekaterinburg")) == due
