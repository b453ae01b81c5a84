"""Reminders sent by hand: who may send one, to whom it goes, at most once a UTC day per proposal, also under a race."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models import ConflictError, Lifecycle, NotAllowedError, session_scope
from models.errors import NotPossibleError
from models.lifecycle import events_of
from models.roster import bump
from models.tables import Event, GroupMembership, ManualReminder
from models.texts import proposal_create
from tests.factories import AUTHOR, CHAIR, ONE_HEAD_PER_STATE, PRESIDING_HEAD, T0, load, make_proposal
from tests.models.test_races import _together

DAY = dt.timedelta(days=1)


def remind(engine: Engine, lifecycle: Lifecycle, pid: int, actor: str, now: dt.datetime = T0) -> Event:
    """Send a reminder by hand in its own transaction."""
    with session_scope(engine) as s:
        return lifecycle.remind_now(s, pid, actor, now=now)


def reminders(engine: Engine, pid: int) -> list[Event]:
    """The proposal's remind events."""
    with session_scope(engine) as s:
        return [e for e in events_of(s, pid) if e.action == "remind"]


def test_the_chair_reminds_the_heads_who_have_not_endorsed(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "endorse", "petrov", now=T0)  # Russia has endorsed: its heads are done
    before = load(forum, pid)
    event = remind(forum, lifecycle, pid, CHAIR, T0 + DAY)
    assert (event.action, event.actor, event.from_state, event.to_state) == ("remind", CHAIR, "reviewed", "reviewed")
    recipients = event.payload["recipients"]
    assert "petrov" not in recipients and "sokolova" not in recipients and CHAIR not in recipients
    assert set(recipients) == {"wang.jianguo", "li.ming", "deshmukh", "patel", "seitkazieva", "nurlanov", "toktogulov",
                               "abdykadyrova", "khan.ayesha", "yousafzai", "rakhimov", "saidova", "karimov", "yusupova"}
    assert event.payload["deadline"] == before.deadline.isoformat() if before.deadline else False
    assert event.payload["text_version"] == 1
    after = load(forum, pid)
    assert (after.state, after.version, after.deadline) == ("reviewed", before.version + 1, before.deadline)
    with session_scope(forum) as s:
        mark = s.exec(select(ManualReminder).where(ManualReminder.proposal_id == pid)).one()
        assert (mark.day, mark.member, mark.event_id) == ((T0 + DAY).date(), CHAIR, event.id)
        assert lifecycle.replay(events_of(s, pid)) == "reviewed"  # a member's notice replays like the system's


def test_once_a_utc_day_per_proposal(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    late = T0.replace(hour=23, minute=30)
    remind(forum, lifecycle, pid, CHAIR, late)
    with pytest.raises(NotPossibleError) as refused:
        remind(forum, lifecycle, pid, PRESIDING_HEAD, late + dt.timedelta(minutes=20))  # another sender, the same day
    assert str(refused.value) == (
        f"proposal {pid} was already reminded today by {CHAIR} at 23:30 UTC; "
        "the next reminder may be sent from 2021-03-02 00:00 UTC"
    )
    assert len(reminders(forum, pid)) == 1
    remind(forum, lifecycle, pid, PRESIDING_HEAD, late + dt.timedelta(minutes=31))  # 00:01 the next day
    assert [e.actor for e in reminders(forum, pid)] == [CHAIR, PRESIDING_HEAD]
    other = make_proposal(forum, lifecycle, state="reviewed", now=late + DAY)
    remind(forum, lifecycle, other, CHAIR, late + DAY)  # the limit is per proposal


def test_two_reminders_at_the_same_moment_make_one_event(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")

    def work(actor: str) -> Any:
        return lambda session: lifecycle.remind_now(session, pid, actor, now=T0).id

    results = _together(forum, [work(CHAIR), work(PRESIDING_HEAD)])
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(losers) == 1, results
    assert isinstance(losers[0], ConflictError), repr(losers[0])
    assert "reminded by someone else at the same moment" in str(losers[0])
    assert len(reminders(forum, pid)) == 1
    with Session(forum) as s:
        assert len(s.exec(select(ManualReminder)).all()) == 1


def drive(engine: Engine, lifecycle: Lifecycle, author: str, steps: list[tuple[str, str]]) -> int:
    """A proposal in the industry group by ``author``, taken through ``steps`` (action, actor) at T0."""
    with session_scope(engine) as s:
        p = lifecycle.create_proposal(session=s, proposal_in=proposal_create(group="industry", author=author, title="X"), now=T0)
        assert p.id is not None
        pid = p.id
    for action, actor in steps:
        with session_scope(engine) as s:
            lifecycle.apply(s, pid, action, actor, now=T0)
    return pid


def check_senders(engine: Engine, lifecycle: Lifecycle, pid: int, senders: list[str], refused: list[str]) -> None:
    """Each of ``refused`` is refused with the rule's message; each of ``senders`` sends one (a day apart)."""
    for actor in refused:
        with pytest.raises(NotAllowedError) as exc, session_scope(engine) as s:
            lifecycle.remind_now(s, pid, actor, now=T0)
        assert f"{actor} may not send a reminder on proposal {pid}: only the chair of working group industry" in str(exc.value)
        with session_scope(engine) as s:
            assert lifecycle.reminding(s, load(engine, pid), actor, T0) is None
    with session_scope(engine) as s:
        assert lifecycle.reminders_by(s, load(engine, pid), T0) == sorted(senders)
    for i, actor in enumerate(senders):
        with session_scope(engine) as s:
            reminding = lifecycle.reminding(s, load(engine, pid), actor, T0 + i * DAY)
            assert reminding is not None and reminding.possible
        remind(engine, lifecycle, pid, actor, T0 + i * DAY)
    assert [e.actor for e in reminders(engine, pid)] == senders


def test_the_chair_and_the_presiding_head_may_remind(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    check_senders(forum, lifecycle, pid, [CHAIR, PRESIDING_HEAD], [AUTHOR, "nurlanova", "sokolova", "lebedeva", "secretariat"])


def test_on_the_chairs_own_proposal_the_deputy_chair_may_remind_too(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = drive(forum, lifecycle, CHAIR, [("submit", CHAIR), ("recommend", "nurlanova")])
    check_senders(forum, lifecycle, pid, [CHAIR, "nurlanova", PRESIDING_HEAD], ["sharma.anil", "lebedeva"])


def test_on_the_presiding_heads_own_proposal_the_terms_deputy_may_remind_too(forum: Engine, lifecycle: Lifecycle) -> None:
    with session_scope(forum) as s:
        s.add(GroupMembership(group_key="industry", member=PRESIDING_HEAD))
        bump(s)
    pid = drive(forum, lifecycle, PRESIDING_HEAD, [("submit", PRESIDING_HEAD), ("recommend", CHAIR),
                                                   *[("endorse", h) for h in ONE_HEAD_PER_STATE]])
    assert load(forum, pid).state == "endorsed"
    check_senders(forum, lifecycle, pid, ["lebedeva", CHAIR, PRESIDING_HEAD], ["sokolova", "nurlanova"])
    with pytest.raises(NotAllowedError) as exc, session_scope(forum) as s:
        lifecycle.remind_now(s, pid, "sokolova", now=T0 + 3 * DAY)
    presiding = "the head of the presiding region RU-CHE or its deputy (lebedeva), as its head wrote it"
    assert str(exc.value).endswith(f"or {presiding} may")


def test_nobody_to_remind_and_final_states_are_refused(forum: Engine, lifecycle: Lifecycle) -> None:
    in_review = make_proposal(forum, lifecycle, state="in_review")
    with pytest.raises(NotPossibleError, match=f"nobody but {CHAIR} must act on proposal {in_review} now"):
        remind(forum, lifecycle, in_review, CHAIR)  # the chair is the one who must act
    with session_scope(forum) as s:
        reminding = lifecycle.reminding(s, load(forum, in_review), CHAIR, T0)
        assert reminding is not None and reminding.recipients == [] and not reminding.possible
    done = make_proposal(forum, lifecycle, state="in_review")
    with session_scope(forum) as s:
        lifecycle.apply(s, done, "reject", CHAIR, comment="out of scope", now=T0)
    with pytest.raises(NotPossibleError, match="nobody has anything left to do"):
        remind(forum, lifecycle, done, CHAIR)
    with session_scope(forum) as s:
        assert lifecycle.reminding(s, load(forum, done), CHAIR, T0) is None
        assert lifecycle.reminders_by(s, load(forum, done), T0) == []
    assert reminders(forum, in_review) == [] and reminders(forum, done) == []


def test_a_draft_and_a_measure_in_progress(forum: Engine, lifecycle: Lifecycle) -> None:
    draft = make_proposal(forum, lifecycle)
    event = remind(forum, lifecycle, draft, CHAIR)
    assert event.payload["recipients"] == [AUTHOR] and "deadline" not in event.payload  # a draft has no deadline
    measure = make_proposal(forum, lifecycle, state="implementing")
    event = remind(forum, lifecycle, measure, PRESIDING_HEAD)
    assert event.payload["recipients"] == sorted([AUTHOR, CHAIR])
    assert event.payload["deadline"] == (T0 + dt.timedelta(days=90)).isoformat()  # the next progress report


def test_stale_version_time_backwards_and_the_system_are_refused(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    version = load(forum, pid).version
    with pytest.raises(ConflictError, match="changed since it was read"), session_scope(forum) as s:
        lifecycle.remind_now(s, pid, CHAIR, now=T0, expected_version=version - 1)
    with pytest.raises(NotAllowedError, match="nobody may act as 'system'"), session_scope(forum) as s:
        lifecycle.remind_now(s, pid, "system", now=T0)
    with pytest.raises(Exception, match="earlier than its newest event"), session_scope(forum) as s:
        lifecycle.remind_now(s, pid, CHAIR, now=T0 - DAY)
    assert reminders(forum, pid) == []
    for head in ONE_HEAD_PER_STATE[:1]:
        with session_scope(forum) as s:
            lifecycle.apply(s, pid, "endorse", head, now=T0)
    with session_scope(forum) as s:
        assert lifecycle.remind_now(s, pid, CHAIR, now=T0, expected_version=version + 1).seq == version + 2
