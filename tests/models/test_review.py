"""The scheduled review on SQLite and PostgreSQL: instants, recipients, exactly-once, batching."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import delete, event, func
from sqlalchemy.engine import Engine
from sqlmodel import select

from models import ConflictError, Lifecycle, session_scope
from models.lifecycle import Notice
from models.review import ReviewMark, ReviewReport, due_ids, next_due, review_batch, review_ids, sweep
from models.roster import bump
from models.tables import EndorsementDecision, Event, PresidingTerm, Proposal
from tests.factories import AUTHOR, CHAIR, ONE_HEAD_PER_STATE, PRESIDING_HEAD, T0, load, make_proposal

DAY, HOUR, MINUTE = dt.timedelta(days=1), dt.timedelta(hours=1), dt.timedelta(minutes=1)
NOTICE_ACTIONS = ("remind", "escalate", "handover", "progress_due", "silence")


def notices(engine: Engine, pid: int | None = None) -> list[Event]:
    """System events the review wrote (all proposals, or one), in order."""
    with session_scope(engine) as s:
        q = select(Event).where(Event.actor == "system", Event.action.in_(NOTICE_ACTIONS))  # type: ignore[attr-defined]
        if pid is not None:
            q = q.where(Event.proposal_id == pid)
        return list(s.exec(q.order_by(Event.id)))  # type: ignore[arg-type]


def act(engine: Engine, lc: Lifecycle, pid: int, action: str, actor: str, now: dt.datetime, **kw: Any) -> None:
    with session_scope(engine) as s:
        lc.apply(s, pid, action, actor, now=now, **kw)


def review(engine: Engine, lc: Lifecycle, now: dt.datetime) -> ReviewReport:
    """One sweep; then a second one at the same instant must change nothing."""
    first = sweep(engine, lc, now)
    before = len(notices(engine))
    again = sweep(engine, lc, now)
    assert again.events == 0 and again.skipped == 0, f"re-run at {now} did something: {again}"
    assert len(notices(engine)) == before
    return first


def test_reminders_and_escalations_at_their_instants(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    deadline = T0 + 30 * DAY
    assert load(forum, pid).deadline == deadline

    assert review(forum, lifecycle, deadline - 7 * DAY - MINUTE).events == 0
    assert review(forum, lifecycle, deadline - 7 * DAY).reminders == 1
    assert review(forum, lifecycle, deadline - 2 * DAY - MINUTE).events == 0
    assert review(forum, lifecycle, deadline - 2 * DAY).reminders == 1
    assert review(forum, lifecycle, deadline - MINUTE).events == 0
    assert review(forum, lifecycle, deadline).escalations == 1
    assert review(forum, lifecycle, deadline + 7 * DAY - MINUTE).events == 0
    assert review(forum, lifecycle, deadline + 7 * DAY).escalations == 1
    assert review(forum, lifecycle, deadline + 60 * DAY).events == 0

    got = [(e.action, e.at, e.payload) for e in notices(forum, pid)]
    iso = deadline.isoformat()
    assert got == [
        ("remind", deadline - 7 * DAY, {"recipients": [CHAIR], "offset_days": 7, "deadline": iso, "text_version": 1}),
        ("remind", deadline - 2 * DAY, {"recipients": [CHAIR], "offset_days": 2, "deadline": iso, "text_version": 1}),
        ("escalate", deadline, {"level": 1, "recipients": [CHAIR], "deadline": iso, "text_version": 1}),
        ("escalate", deadline + 7 * DAY, {"level": 2, "recipients": [PRESIDING_HEAD], "deadline": iso, "text_version": 1}),
    ]
    p = load(forum, pid)
    assert p.state == "in_review" and p.version == 2 + 4  # create, submit, then four notices
    with session_scope(forum) as s:
        assert due_ids(s, lifecycle, deadline + 60 * DAY) == []


def test_a_new_state_entry_gets_its_own_reminders(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    review(forum, lifecycle, T0 + 23 * DAY)  # first reminder of the first entry
    act(forum, lifecycle, pid, "return", CHAIR, T0 + 24 * DAY, comment="More detail, please.")
    act(forum, lifecycle, pid, "submit", AUTHOR, T0 + 25 * DAY)
    second = T0 + 25 * DAY + 30 * DAY
    assert review(forum, lifecycle, second - 7 * DAY).reminders == 1
    reminders = [(e.at, e.payload["deadline"]) for e in notices(forum, pid) if e.action == "remind"]
    assert reminders == [
        (T0 + 23 * DAY, (T0 + 30 * DAY).isoformat()),
        (second - 7 * DAY, second.isoformat()),
    ]


def test_reminders_go_only_to_those_who_must_still_act(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    # China (wang.jianguo) and Russia (petrov) endorse: neither Chinese nor Russian head must act any more.
    act(forum, lifecycle, pid, "endorse", "wang.jianguo", T0 + DAY)
    act(forum, lifecycle, pid, "endorse", "petrov", T0 + 2 * DAY)
    deadline = T0 + 21 * DAY
    assert review(forum, lifecycle, deadline - 7 * DAY).reminders == 1
    (reminder,) = notices(forum, pid)
    recipients = reminder.payload["recipients"]
    assert not {"wang.jianguo", "li.ming", "petrov", "sokolova"} & set(recipients)
    assert set(recipients) == {
        "deshmukh", "patel", "seitkazieva", "nurlanov", "toktogulov", "abdykadyrova", "khan.ayesha", "yousafzai",
        "rakhimov", "saidova", "karimov", "yusupova",
    }
    with session_scope(forum) as s:
        p = s.get(Proposal, pid)
        assert p is not None
        assert recipients == lifecycle.must_act(s, p, deadline - 7 * DAY)
    # India endorses before the second reminder: both Indian heads drop out of it.
    act(forum, lifecycle, pid, "endorse", "patel", deadline - 3 * DAY)
    review(forum, lifecycle, deadline - 2 * DAY)
    second = notices(forum, pid)[-1]
    assert second.payload["offset_days"] == 2
    assert not {"deshmukh", "patel"} & set(second.payload["recipients"])
    assert len(second.payload["recipients"]) == 10


def test_silence_procedure_closes_the_round_to_the_minute(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    act(forum, lifecycle, pid, "endorse", "karimov", T0 + DAY)
    deadline = T0 + 21 * DAY
    for before in (7 * DAY, 2 * DAY, MINUTE):
        review(forum, lifecycle, deadline - before)
    assert load(forum, pid).state == "reviewed"
    assert review(forum, lifecycle, deadline).closed == 1
    p = load(forum, pid)
    assert (p.state, p.state_entered_at, p.presiding_region) == ("endorsed", deadline, "RU-CHE")
    silence = [e for e in notices(forum, pid) if e.action == "silence"]
    assert len(silence) == 1 and silence[0].at == deadline
    assert silence[0].payload["endorsed_by"] == ["UZ-SA"]
    # The round's deadline passed: the reminders of the round were sent, none after, no escalation.
    assert [e.action for e in notices(forum, pid)] == ["remind", "remind", "silence"]


def test_a_late_sweep_skips_stale_reminders_and_escalates_every_level(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    deadline = T0 + 30 * DAY
    report = review(forum, lifecycle, deadline + 8 * DAY)
    assert (report.reminders, report.escalations, report.skipped) == (0, 2, 2)
    assert [e.payload["level"] for e in notices(forum, pid)] == [1, 2]
    with session_scope(forum) as s:
        marks = list(s.exec(select(ReviewMark).where(ReviewMark.proposal_id == pid)))
    assert sorted((m.kind, m.step, m.event_id is None) for m in marks) == [
        ("escalate", 1, False), ("escalate", 2, False), ("remind", 2, True), ("remind", 7, True),
    ]


def test_presiding_term_hand_over(forum: Engine, lifecycle: Lifecycle) -> None:
    entered = dt.datetime(2022, 12, 26, 10, 0, tzinfo=dt.UTC)
    pid = make_proposal(forum, lifecycle, state="endorsed", now=entered)
    assert load(forum, pid).presiding_region == "RU-CHE"
    assert review(forum, lifecycle, dt.datetime(2022, 12, 31, 23, 59, tzinfo=dt.UTC)).handovers == 0
    new_year = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
    assert review(forum, lifecycle, new_year).handovers == 1
    (handover,) = notices(forum, pid)
    assert (handover.action, handover.at) == ("handover", new_year)
    assert handover.payload == {"from_region": "RU-CHE", "to_region": "UZ-SA", "recipients": ["karimov"], "text_version": 1}
    assert load(forum, pid).presiding_region == "UZ-SA"
    # The reminder before the approval deadline goes to the new presiding head.
    assert review(forum, lifecycle, entered + 14 * DAY - 5 * DAY).reminders == 1
    assert notices(forum, pid)[-1].payload["recipients"] == ["karimov"]


def test_implementation_progress_reviews(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="implementing")
    due = T0 + 90 * DAY
    assert review(forum, lifecycle, due - 7 * DAY - MINUTE).events == 0
    assert review(forum, lifecycle, due - 7 * DAY).progress_due == 1
    assert review(forum, lifecycle, due).escalations == 1
    assert review(forum, lifecycle, due + 7 * DAY).escalations == 1
    got = [(e.action, e.at, e.payload) for e in notices(forum, pid)]
    assert got == [
        ("progress_due", due - 7 * DAY, {"recipients": sorted([AUTHOR, CHAIR]), "due": due.isoformat(), "text_version": 1}),
        ("escalate", due, {"level": 1, "recipients": [CHAIR], "deadline": due.isoformat(), "text_version": 1}),
        ("escalate", due + 7 * DAY, {"level": 2, "recipients": [PRESIDING_HEAD], "deadline": due.isoformat(), "text_version": 1}),
    ]
    # A report starts a new cadence.
    reported = due + 10 * DAY
    act(forum, lifecycle, pid, "report_progress", AUTHOR, reported, percent=40, comment="Site prepared.")
    assert review(forum, lifecycle, reported + 83 * DAY - MINUTE).events == 0
    assert review(forum, lifecycle, reported + 83 * DAY).progress_due == 1
    assert notices(forum, pid)[-1].payload["due"] == (reported + 90 * DAY).isoformat()


def test_proposals_acted_on_in_time_hear_nothing(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    for day in range(0, 80):
        # Each day's decisions in the morning, the review in the afternoon: time only moves forward.
        morning = T0 + day * DAY
        if day == 10:
            act(forum, lifecycle, pid, "recommend", CHAIR, morning)
        elif day == 11:
            for head in ONE_HEAD_PER_STATE:
                act(forum, lifecycle, pid, "endorse", head, morning)
        elif day == 12:
            act(forum, lifecycle, pid, "approve", PRESIDING_HEAD, morning)
        review(forum, lifecycle, morning + 6 * HOUR)
    assert load(forum, pid).state == "implementing"
    assert notices(forum, pid) == []


def test_rerunning_a_batch_creates_nothing(forum: Engine, lifecycle: Lifecycle) -> None:
    ids = [make_proposal(forum, lifecycle, state="in_review") for _ in range(3)]
    now = T0 + 23 * DAY
    assert review_ids(forum, lifecycle, ids, now).reminders == 3
    # The same ids again, as a retried task would: the marks and cursors make it a no-op.
    assert review_ids(forum, lifecycle, ids, now).events == 0
    with session_scope(forum) as s:
        assert s.exec(select(func.count()).select_from(ReviewMark)).one() == 3
        assert s.exec(select(func.count()).select_from(Event).where(Event.action == "remind")).one() == 3


def test_selection_reads_only_due_rows(forum: Engine, lifecycle: Lifecycle) -> None:
    early = make_proposal(forum, lifecycle, state="in_review", now=T0)
    late = make_proposal(forum, lifecycle, state="in_review", now=T0 + 10 * DAY)
    make_proposal(forum, lifecycle, state="drafted")
    with session_scope(forum) as s:
        assert due_ids(s, lifecycle, T0 + 23 * DAY - MINUTE) == []
        assert due_ids(s, lifecycle, T0 + 23 * DAY) == [early]
    review(forum, lifecycle, T0 + 23 * DAY)
    with session_scope(forum) as s:
        assert due_ids(s, lifecycle, T0 + 23 * DAY) == []
        assert due_ids(s, lifecycle, T0 + 28 * DAY - MINUTE) == []  # early's next step: 2 days before its deadline
        assert due_ids(s, lifecycle, T0 + 28 * DAY) == [early]
        assert due_ids(s, lifecycle, T0 + 33 * DAY) == [early, late]


@contextmanager
def count_selects(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def test_a_batch_costs_the_same_number_of_reads_for_2_or_12_proposals(forum: Engine, lifecycle: Lifecycle) -> None:
    small = [make_proposal(forum, lifecycle, state="reviewed") for _ in range(2)]
    large = [make_proposal(forum, lifecycle, state="reviewed", now=T0 + DAY) for _ in range(12)]
    counts = []
    for ids, now in ((small, T0 + 14 * DAY), (large, T0 + 15 * DAY)):
        with count_selects(forum) as seen, session_scope(forum) as s:
            report = review_batch(s, lifecycle, ids, now)
        assert report.reminders == len(ids)
        counts.append(len(seen))
    assert counts[0] == counts[1]


def test_notices_on_a_proposal_changed_meanwhile_are_refused(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    with session_scope(forum) as s:
        p = s.get(Proposal, pid)
        assert p is not None
        version = p.version
        act(forum, lifecycle, pid, "recommend", CHAIR, T0 + DAY)  # another transaction moves the proposal on
        with pytest.raises(ConflictError):
            lifecycle.notice_many(s, [Notice(p, "remind", {"recipients": [CHAIR]})], now=T0 + DAY)
        s.rollback()
    assert load(forum, pid).version == version + 1
    assert notices(forum, pid) == []


class _InterruptedLifecycle(Lifecycle):
    """Lets the chair act on the proposal in another transaction just before the review writes its first notices."""

    interrupted = False
    engine: Engine

    def notice_many(self, session: Any, notices: Any, *, now: dt.datetime) -> list[int]:
        if not self.interrupted:
            self.interrupted = True
            pid = notices[0].proposal.id
            with session_scope(self.engine) as other:
                Lifecycle.apply(self, other, pid, "recommend", CHAIR, now=now)
        return super().notice_many(session, notices, now=now)


def test_a_batch_that_meets_a_concurrent_action_is_read_again(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    interrupted = _InterruptedLifecycle(lifecycle.definition)
    interrupted.engine = forum
    report = review_ids(forum, interrupted, [pid], T0 + 23 * DAY)
    assert interrupted.interrupted
    # Read again: the proposal is in a new round now, nothing is due for it, and no reminder went to the chair.
    assert report.reminders == 0
    assert load(forum, pid).state == "reviewed"
    assert [e.action for e in notices(forum, pid)] == []


def test_a_round_with_an_objection_outside_the_lifecycle_is_left_open(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    with session_scope(forum) as s:  # a hand-edited database: apply() would have ended the round
        s.add(EndorsementDecision(proposal_id=pid, round=1, member="karimov", region="UZ-SA", country="UZ",
                                  decision="object", at=T0 + DAY))
    deadline = T0 + 21 * DAY
    assert review(forum, lifecycle, deadline).closed == 0
    assert load(forum, pid).state == "reviewed"
    with session_scope(forum) as s:
        assert due_ids(s, lifecycle, deadline + DAY) == []  # left to a person, not retried every hour


@contextmanager
def reads_before_writes(engine: Engine, parties: int = 2) -> Iterator[None]:
    """Hold each thread's first write until every party has done its reads: the sweeps overlap for certain."""
    barrier = threading.Barrier(parties, timeout=30)
    local = threading.local()

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not getattr(local, "waited", False) and statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            local.waited = True
            barrier.wait()

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", before)


def sweeps_at_once(engine: Engine, lc: Lifecycle, now: dt.datetime) -> list[ReviewReport]:
    """Two whole sweeps at ``now`` in two threads, each with its own sessions, overlapping."""
    with reads_before_writes(engine), ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(sweep, engine, lc, now) for _ in range(2)]
        return [f.result(timeout=120) for f in futures]


def mark_keys(engine: Engine) -> list[tuple[int, dt.datetime, str, int]]:
    with session_scope(engine) as s:
        return [(m.proposal_id, m.anchor, m.kind, m.step) for m in s.exec(select(ReviewMark))]


def test_two_sweeps_at_once_issue_every_reminder_once(forum: Engine, lifecycle: Lifecycle) -> None:
    ids = [make_proposal(forum, lifecycle, state="in_review") for _ in range(4)]
    reports = sweeps_at_once(forum, lifecycle, T0 + 23 * DAY)
    assert sum(r.reminders for r in reports) == 4 and sum(r.events for r in reports) == 4
    assert sorted(e.proposal_id for e in notices(forum)) == ids
    keys = mark_keys(forum)
    assert len(keys) == len(set(keys)) == 4


def test_two_sweeps_at_once_record_every_skipped_step_once(forum: Engine, lifecycle: Lifecycle) -> None:
    # Endorsed proposals with no presiding term in force: their reminders reach nobody and are recorded as skipped.
    # Such a batch writes only marks and cursors; nothing but the marks' unique key stops a second sweep repeating it.
    ids = [make_proposal(forum, lifecycle, state="endorsed") for _ in range(3)]
    with session_scope(forum) as s:
        s.exec(delete(PresidingTerm))  # type: ignore[call-overload]
        bump(s)
    deadline = load(forum, ids[0]).deadline
    assert deadline is not None
    assert review(forum, lifecycle, deadline - 5 * DAY).skipped == 3  # the cursors exist from here on
    reports = sweeps_at_once(forum, lifecycle, deadline - DAY)
    assert sum(r.skipped for r in reports) == 3 and sum(r.events for r in reports) == 0
    keys = mark_keys(forum)
    assert len(keys) == len(set(keys)) == 6
    assert notices(forum) == []


def first_due(engine: Engine, lc: Lifecycle, now: dt.datetime, ids: set[int] | None = None) -> dt.datetime | None:
    with session_scope(engine) as s:
        return next_due(s, lc, now, ids)


def due_at(engine: Engine, lc: Lifecycle, now: dt.datetime) -> list[int]:
    with session_scope(engine) as s:
        return due_ids(s, lc, now)


def test_next_due_is_the_first_instant_a_sweep_finds_work(forum: Engine, lifecycle: Lifecycle) -> None:
    # Every kind of step: reminders and escalations, a round closing by silence, a term hand-over, progress reviews.
    start = dt.datetime(2022, 12, 26, 10, 0, tzinfo=dt.UTC)
    make_proposal(forum, lifecycle, state="in_review", now=dt.datetime(2022, 12, 1, tzinfo=dt.UTC))
    make_proposal(forum, lifecycle, state="reviewed", now=dt.datetime(2022, 12, 10, 7, 30, tzinfo=dt.UTC))
    make_proposal(forum, lifecycle, state="implementing", now=dt.datetime(2022, 11, 1, tzinfo=dt.UTC))
    endorsed = make_proposal(forum, lifecycle, state="endorsed", now=start)
    sweep(forum, lifecycle, start)
    # The in_review proposal's reminder 2 days before its deadline (the one 7 days before came with the first sweep).
    assert first_due(forum, lifecycle, start) == dt.datetime(2022, 12, 29, tzinfo=dt.UTC)
    now, seen = start, Counter[str]()
    while (nxt := first_due(forum, lifecycle, now)) is not None and nxt < start + 200 * DAY:
        # Nothing is due before it (selection only grows with time until the day's presiding term changes) ...
        assert nxt > now and due_at(forum, lifecycle, nxt - MINUTE) == [], (now, nxt)
        # ... and at it something is: a sweep there does work.
        assert due_at(forum, lifecycle, nxt) != []
        report = sweep(forum, lifecycle, nxt)
        assert report.events + report.skipped > 0, nxt
        seen.update({k: v for k, v in report.as_dict().items() if v and k != "proposals"})
        now = nxt
    assert set(seen) == {"reminders", "escalations", "closed", "handovers", "progress_due"}
    assert load(forum, endorsed).presiding_region == "UZ-SA"


def test_next_due_of_some_proposals(forum: Engine, lifecycle: Lifecycle) -> None:
    early = make_proposal(forum, lifecycle, state="in_review", now=T0)
    late = make_proposal(forum, lifecycle, state="in_review", now=T0 + 10 * DAY)
    drafted = make_proposal(forum, lifecycle, state="drafted", now=T0 + 10 * DAY)
    now = T0 + 10 * DAY
    assert first_due(forum, lifecycle, now) == T0 + 23 * DAY  # 7 days before early's deadline
    assert first_due(forum, lifecycle, now, {late}) == T0 + 33 * DAY
    assert first_due(forum, lifecycle, now, {late, drafted}) == T0 + 33 * DAY
    assert first_due(forum, lifecycle, now, {drafted}) is None
    assert first_due(forum, lifecycle, now, set()) is None
    # Once early's first reminder is issued, its next step is the second reminder.
    sweep(forum, lifecycle, T0 + 23 * DAY)
    assert first_due(forum, lifecycle, T0 + 23 * DAY, {early}) == T0 + 28 * DAY
    # An action moves the proposal on: its steps are those of the new state.
    act(forum, lifecycle, early, "recommend", CHAIR, T0 + 24 * DAY)
    assert first_due(forum, lifecycle, T0 + 24 * DAY, {early}) == T0 + 24 * DAY + 14 * DAY  # round: 21 days, reminder 7
    # Something already due (a sweep that has not run yet) is due now.
    assert first_due(forum, lifecycle, T0 + 40 * DAY) == T0 + 40 * DAY
