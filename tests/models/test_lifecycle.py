"""The lifecycle on SQLite and PostgreSQL: every action allowed and refused per role and scope."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from models import ConflictError, InvalidInputError, Lifecycle, NotAllowedError, NotFoundError, events_of, session_scope
from models.tables import EndorsementDecision, Event, ProgressReport, Proposal, ProposalCreate
from tests.factories import AUTHOR, CHAIR, ONE_HEAD_PER_STATE, PRESIDING_HEAD, T0, load, make_proposal
from tests.models.conftest import counted


def snapshot(engine: Engine, pid: int) -> tuple[Any, ...]:
    """Everything an action could change, to prove a refusal changed nothing."""
    with session_scope(engine) as s:
        p = s.get(Proposal, pid)
        assert p is not None
        n_events = s.exec(select(func.count()).select_from(Event).where(Event.proposal_id == pid)).one()
        n_dec = s.exec(select(func.count()).select_from(EndorsementDecision)).one()
        n_rep = s.exec(select(func.count()).select_from(ProgressReport)).one()
        return (p.state, p.version, p.deadline, p.round, p.percent, n_events, n_dec, n_rep)


def act(engine: Engine, lc: Lifecycle, pid: int, action: str, actor: str, now: dt.datetime = T0, **kw: Any) -> list[Event]:
    with session_scope(engine) as s:
        return lc.apply(s, pid, action, actor, now=now, **kw)


def refused(engine: Engine, lc: Lifecycle, pid: int, action: str, actor: str, exc: type[Exception] = NotAllowedError,
            now: dt.datetime = T0, **kw: Any) -> str:
    before = snapshot(engine, pid)
    with pytest.raises(exc) as info:
        act(engine, lc, pid, action, actor, now, **kw)
    assert snapshot(engine, pid) == before
    return str(info.value)


# (state, action, allowed actor, refused actors) — each refusal is a different wrong role or scope.
MATRIX = [
    ("drafted", "submit", AUTHOR, ["kuznetsov", "nurlanova", "petrov", "secretariat"]),
    ("drafted", "withdraw", AUTHOR, ["kuznetsov", "secretariat"]),
    ("in_review", "recommend", CHAIR, [AUTHOR, "nurlanova", "tursunov", "petrov"]),  # author, member, other chair, head
    ("in_review", "return", CHAIR, [AUTHOR, "tursunov"]),
    ("in_review", "reject", CHAIR, [AUTHOR, "liu.yang", "secretariat"]),
    ("in_review", "withdraw", AUTHOR, [CHAIR]),
    ("reviewed", "endorse", "petrov", [AUTHOR, CHAIR, "secretariat"]),
    ("reviewed", "object", "li.ming", [CHAIR, "nurlanova"]),
    ("reviewed", "withdraw", AUTHOR, ["petrov", CHAIR]),
    ("endorsed", "approve", PRESIDING_HEAD, ["karimov", "sokolova", CHAIR, AUTHOR]),  # other heads, RU but not RU-CHE
    ("endorsed", "refer_back", PRESIDING_HEAD, ["nurlanov", CHAIR]),
    ("implementing", "report_progress", AUTHOR, ["petrov", "nurlanova"]),
    ("implementing", "report_progress", CHAIR, ["tursunov"]),
    ("implementing", "complete", CHAIR, ["petrov", "secretariat"]),
]
NEEDS = {"return": {"comment": "more detail"}, "reject": {"comment": "out of mandate"}, "object": {"comment": "no"},
         "refer_back": {"comment": "budget"}, "report_progress": {"percent": 50, "comment": "half"}}
DEST = {"submit": "in_review", "withdraw": "withdrawn", "recommend": "reviewed", "return": "drafted", "reject": "rejected",
        "endorse": "reviewed", "object": "in_review", "approve": "implementing", "refer_back": "in_review",
        "report_progress": "implementing", "complete": "implemented"}


@pytest.mark.parametrize(("state", "action", "actor", "wrong"), MATRIX, ids=[f"{m[0]}-{m[1]}-{m[2]}" for m in MATRIX])
def test_action_allowed_for_its_role_and_refused_for_others(
    forum: Engine, lifecycle: Lifecycle, state: str, action: str, actor: str, wrong: list[str]
) -> None:
    pid = make_proposal(forum, lifecycle, state=state)
    for other in wrong:
        message = refused(forum, lifecycle, pid, action, other, **NEEDS.get(action, {}))
        assert f"{other} may not {action}" in message
        assert "allowed now:" in message
    events = act(forum, lifecycle, pid, action, actor, **NEEDS.get(action, {}))
    assert events[0].action == action and events[0].actor == actor
    assert load(forum, pid).state == DEST[action]


def test_actions_outside_their_state_are_refused_and_say_what_is_possible(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="drafted")
    message = refused(forum, lifecycle, pid, "approve", PRESIDING_HEAD)
    assert "'approve' is not possible in state 'drafted'" in message
    assert f"submit by {AUTHOR}" in message
    unknown = refused(forum, lifecycle, pid, "fly", AUTHOR, InvalidInputError)  # a usage error, not a refusal
    assert "unknown action 'fly'; actions: submit, recommend" in unknown
    refused(forum, lifecycle, pid, "submit", "nobody", NotFoundError)
    with session_scope(forum) as s, pytest.raises(NotFoundError):
        lifecycle.apply(s, 999, "submit", AUTHOR, now=T0)


def test_system_actions_cannot_be_taken_by_people(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    assert "only the system" in refused(forum, lifecycle, pid, "silence", "secretariat")
    assert "only the system" in refused(forum, lifecycle, pid, "consensus", PRESIDING_HEAD)


@pytest.mark.parametrize("action", ["consensus", "silence", "endorse", "withdraw"])
def test_nobody_acts_as_the_system_through_apply(forum: Engine, lifecycle: Lifecycle, action: str) -> None:
    # Before the deadline, with no endorsement: as the system these would end the round at once.
    pid = make_proposal(forum, lifecycle, state="reviewed")
    message = refused(forum, lifecycle, pid, action, "system")
    assert "nobody may act as 'system'" in message
    # The scheduled review still closes the round at its deadline, as the system.
    deadline = load(forum, pid).deadline
    assert deadline is not None
    with session_scope(forum) as s:
        ev = lifecycle.close_round(s, pid, now=deadline)
    assert ev is not None and (ev.action, ev.actor) == ("silence", "system")
    assert load(forum, pid).state == "endorsed"


def test_a_chair_does_not_recommend_their_own_proposal_the_deputy_chair_does(forum: Engine, lifecycle: Lifecycle) -> None:
    # kuznetsov chairs industry and writes a proposal there: nurlanova, the deputy chair, holds the recommendation.
    pid = make_proposal(forum, lifecycle, state="drafted", author=CHAIR)
    act(forum, lifecycle, pid, "submit", CHAIR)
    own = refused(forum, lifecycle, pid, "recommend", CHAIR)
    assert "kuznetsov may not recommend their own proposal" in own and "recommend by nurlanova" in own
    other = refused(forum, lifecycle, pid, "recommend", "tursunov")
    assert "only the deputy chair of working group industry (nurlanova)" in other
    with session_scope(forum) as s:
        p = s.get(Proposal, pid)
        assert p is not None
        by_action = {a.action: a.actors for a in lifecycle.allowed(s, p, T0)}
        # Only the no-self step moves to the deputy: returning and rejecting stay with the chair.
        assert by_action["recommend"] == ["nurlanova"] and by_action["return"] == [CHAIR]
        assert lifecycle.must_act(s, p, T0) == [CHAIR, "nurlanova"]
    act(forum, lifecycle, pid, "recommend", "nurlanova")
    assert load(forum, pid).state == "reviewed"
    # On anyone else's proposal the deputy chair is no chair.
    other_pid = make_proposal(forum, lifecycle, state="in_review")
    message = refused(forum, lifecycle, other_pid, "recommend", "nurlanova")
    assert "only the chair of working group industry (kuznetsov)" in message


def test_comment_and_percent_rules(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    assert "requires a comment" in refused(forum, lifecycle, pid, "return", CHAIR, InvalidInputError)
    assert "requires a comment" in refused(forum, lifecycle, pid, "reject", CHAIR, InvalidInputError, comment="   ")
    pid2 = make_proposal(forum, lifecycle, state="implementing")
    assert "requires a percent" in refused(forum, lifecycle, pid2, "report_progress", AUTHOR, InvalidInputError)
    assert "between 0 and 100" in refused(forum, lifecycle, pid2, "report_progress", AUTHOR, InvalidInputError, percent=101)
    act(forum, lifecycle, pid2, "report_progress", AUTHOR, percent=60)
    assert "cannot go back" in refused(forum, lifecycle, pid2, "report_progress", AUTHOR, InvalidInputError, percent=40)
    assert "takes no percent" in refused(forum, lifecycle, pid2, "complete", AUTHOR, InvalidInputError, percent=100)
    assert load(forum, pid2).percent == 60


def test_deadline_follows_the_sla_of_each_state(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="drafted")
    assert load(forum, pid).deadline is None
    later = T0 + dt.timedelta(days=3)
    act(forum, lifecycle, pid, "submit", AUTHOR, later)
    p = load(forum, pid)
    assert p.deadline == later + dt.timedelta(days=30)
    assert p.state_entered_at == later and p.deadline.tzinfo is not None
    act(forum, lifecycle, pid, "recommend", CHAIR, later)
    assert load(forum, pid).deadline == later + dt.timedelta(days=21)


def test_presiding_region_is_chosen_by_date(forum: Engine, lifecycle: Lifecycle) -> None:
    last_day = dt.datetime(2022, 12, 31, 23, 0, tzinfo=dt.UTC)
    first_day = dt.datetime(2023, 1, 1, 0, 30, tzinfo=dt.UTC)
    a = make_proposal(forum, lifecycle, state="endorsed", now=last_day)
    b = make_proposal(forum, lifecycle, state="endorsed", now=last_day)
    # On 2023-01-01 Samarkand (UZ-SA) presides: Chelyabinsk's head no longer approves.
    assert "presiding region UZ-SA" in refused(forum, lifecycle, a, "approve", "petrov", now=first_day)
    act(forum, lifecycle, a, "approve", "karimov", first_day)
    act(forum, lifecycle, b, "approve", "petrov", last_day)
    assert load(forum, a).state == load(forum, b).state == "implementing"
    before = dt.datetime(2019, 5, 1, tzinfo=dt.UTC)
    c = make_proposal(forum, lifecycle, state="endorsed", now=before)
    message = refused(forum, lifecycle, c, "approve", "petrov", now=before)
    assert "no presiding term covers 2019-05-01: a term must be added to the forum definition" in message
    # After the shipped definition's last term nobody can approve until a term is added.
    after = dt.datetime(2029, 1, 5, 10, 0, tzinfo=dt.UTC)
    d = make_proposal(forum, lifecycle, state="endorsed", now=after)
    message = refused(forum, lifecycle, d, "approve", "nurlanov", now=after)
    assert "no presiding term covers 2029-01-05: a term must be added to the forum definition" in message
    assert "approve by nobody" in message


def test_consensus_needs_every_member_state(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    for head in ONE_HEAD_PER_STATE[:-1]:
        act(forum, lifecycle, pid, "endorse", head)
    # A second head from an already endorsing state does not complete it; Uzbekistan is still missing.
    act(forum, lifecycle, pid, "endorse", "sokolova")
    assert load(forum, pid).state == "reviewed"
    with session_scope(forum) as s:
        p = s.get(Proposal, pid)
        assert p is not None
        assert lifecycle.must_act(s, p, T0) == ["karimov", "yusupova"]
    assert "already decided" in refused(forum, lifecycle, pid, "endorse", "petrov")
    events = act(forum, lifecycle, pid, "endorse", "yusupova")
    assert [(e.action, e.actor, e.to_state) for e in events] == [
        ("endorse", "yusupova", "reviewed"), ("consensus", "system", "endorsed"),
    ]
    p = load(forum, pid)
    assert p.state == "endorsed" and p.presiding_region == "RU-CHE"
    assert p.deadline == T0 + dt.timedelta(days=14)


def test_objection_returns_to_review_and_opens_a_new_round(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    act(forum, lifecycle, pid, "endorse", "petrov")
    act(forum, lifecycle, pid, "object", "yousafzai", comment="Needs the WCO data model")
    p = load(forum, pid)
    assert (p.state, p.round) == ("in_review", 1)
    act(forum, lifecycle, pid, "recommend", CHAIR)
    assert load(forum, pid).round == 2
    # Decisions of round 1 do not count in round 2: petrov may endorse again, yousafzai may now endorse.
    for head in ONE_HEAD_PER_STATE[:-1]:
        act(forum, lifecycle, pid, "endorse", head)
    act(forum, lifecycle, pid, "endorse", "karimov")
    assert load(forum, pid).state == "endorsed"


def test_silence_procedure_closes_the_round_at_its_deadline(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    act(forum, lifecycle, pid, "endorse", "li.ming")
    deadline = load(forum, pid).deadline
    assert deadline == T0 + dt.timedelta(days=21)
    with session_scope(forum) as s:
        assert lifecycle.close_round(s, pid, now=deadline - dt.timedelta(minutes=1)) is None
    assert load(forum, pid).state == "reviewed"
    with session_scope(forum) as s:
        ev = lifecycle.close_round(s, pid, now=deadline)
        assert ev is not None and ev.action == "silence" and ev.actor == "system"
        assert ev.payload["endorsed_by"] == ["CN-HL"]
    assert load(forum, pid).state == "endorsed"
    with session_scope(forum) as s:  # closing again does nothing
        assert lifecycle.close_round(s, pid, now=deadline + dt.timedelta(days=1)) is None


def test_stale_write_is_a_conflict(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    with session_scope(forum) as s1:
        p = s1.get(Proposal, pid)  # read version 2
        assert p is not None
        act(forum, lifecycle, pid, "return", CHAIR, comment="again")  # someone else writes meanwhile
        with pytest.raises(ConflictError):
            lifecycle.apply(s1, pid, "withdraw", AUTHOR, now=T0)
    assert load(forum, pid).state == "drafted"
    assert "changed since it was read" in refused(forum, lifecycle, pid, "submit", AUTHOR, ConflictError, expected_version=2)


def test_apply_leaves_the_session_as_a_query_would(forum: Engine, lifecycle: Lifecycle) -> None:
    """The rows apply reads and writes with Core statements are in the session as if loaded: no SQL to get them again."""
    pid = make_proposal(forum, lifecycle, state="in_review", now=T0)
    later = T0 + dt.timedelta(hours=1)
    with session_scope(forum) as s:
        p = s.get(Proposal, pid)  # the caller's copy (the API reads it for its ETag) follows the change
        assert p is not None
        (ev,) = lifecycle.apply(s, pid, "recommend", CHAIR, now=later)
        assert (p.state, p.version, p.updated_at, p.round) == ("reviewed", 3, later, 1)
        with counted(forum) as seen:
            assert s.get(Event, ev.id) is ev and s.get(Proposal, pid) is p
        assert seen == [] and not s.new and not s.dirty
    # Readable after the commit, and equal to what the database holds.
    assert (ev.proposal_id, ev.seq, ev.action, ev.from_state, ev.to_state) == (pid, 3, "recommend", "in_review", "reviewed")
    with session_scope(forum) as s:
        stored = s.get(Event, ev.id)
        assert stored is not None and stored.model_dump() == ev.model_dump()
    with session_scope(forum) as s:  # the proposal not loaded before
        (ev,) = lifecycle.apply(s, pid, "endorse", PRESIDING_HEAD, now=later)
        with counted(forum) as seen:
            assert s.get(Event, ev.id) is ev
        assert seen == []
        p = s.get(Proposal, pid)
        assert p is not None and p.version == 4 and p.updated_at == later
    with session_scope(forum) as s:  # an expired copy is filled from the row apply reads, not read again
        p = s.get(Proposal, pid)
        assert p is not None
        s.expire(p)
        with counted(forum) as seen:
            lifecycle.apply(s, pid, "endorse", ONE_HEAD_PER_STATE[0], now=later)
            assert p.version == 5 and p.title == "Joint agro-industrial park"
        assert len(seen) == 4, seen
    with session_scope(forum) as s:  # what the caller changed first is written first (and kept)
        p = s.get(Proposal, pid)
        assert p is not None
        p.summary = "Changed in the same session"
        lifecycle.apply(s, pid, "endorse", ONE_HEAD_PER_STATE[1], now=later)
    assert load(forum, pid).summary == "Changed in the same session" and load(forum, pid).version == 6


def test_an_action_sets_only_the_columns_it_changes(forum: Engine, lifecycle: Lifecycle) -> None:
    """An endorsement that keeps the state does not set it (SQLite would rewrite the state's indexes all the same)."""
    pid = make_proposal(forum, lifecycle, state="reviewed")
    with session_scope(forum) as s, counted(forum) as seen:
        lifecycle.apply(s, pid, "endorse", PRESIDING_HEAD, now=T0 + dt.timedelta(hours=1))
    (update,) = [q for q in seen if q.lstrip().upper().startswith("UPDATE")]
    assert "updated_at" in update and "version" in update and "state" not in update.split("WHERE")[0]
    p = load(forum, pid)
    assert (p.state, p.version, p.updated_at) == ("reviewed", 4, T0 + dt.timedelta(hours=1))


def test_events_are_numbered_and_replay_reproduces_state(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="implementing")
    act(forum, lifecycle, pid, "report_progress", AUTHOR, percent=100, comment="done")
    act(forum, lifecycle, pid, "complete", CHAIR)
    with session_scope(forum) as s:
        events = events_of(s, pid)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[0].action == "create" and events[-1].action == "complete"
        assert lifecycle.replay(events) == "implemented" == s.get(Proposal, pid).state  # type: ignore[union-attr]
        assert all(e.at.tzinfo is not None for e in events)
        assert s.get(Proposal, pid).version == len(events)  # type: ignore[union-attr]
        events[3].to_state = "withdrawn"  # a tampered log does not replay
        with pytest.raises(ValueError, match="replay gives"):
            lifecycle.replay(events)
        s.rollback()


def test_only_group_members_propose(forum: Engine, lifecycle: Lifecycle) -> None:
    with session_scope(forum) as s, pytest.raises(NotAllowedError, match="not a member of working group industry"):
        lifecycle.create_proposal(session=s, proposal_in=ProposalCreate(group="industry", author="petrov", title="x"), now=T0)
    with session_scope(forum) as s, pytest.raises(InvalidInputError, match="group: unknown working group 'space'"):
        lifecycle.create_proposal(session=s, proposal_in=ProposalCreate(group="space", author="zhao.lei", title="x"), now=T0)
    with session_scope(forum) as s, pytest.raises(InvalidInputError, match="aware"):
        lifecycle.create_proposal(
            session=s, proposal_in=ProposalCreate(group="industry", author="zhao.lei", title="x"), now=dt.datetime(2021, 1, 1)
        )
    with session_scope(forum) as s:
        assert s.exec(select(func.count()).select_from(Proposal)).one() == 0


def test_waiting_on_answers_as_must_act_and_allowed_one_by_one(forum: Engine, lifecycle: Lifecycle) -> None:
    """The inbox's batch answer (one query for every round's decisions) is the one-by-one answer, for every member."""
    states = ("drafted", "in_review", "reviewed", "endorsed", "implementing")
    pids = [make_proposal(forum, lifecycle, state=state) for state in states]
    partly = make_proposal(forum, lifecycle, state="reviewed")  # a round where some have decided
    act(forum, lifecycle, partly, "endorse", ONE_HEAD_PER_STATE[0])
    act(forum, lifecycle, partly, "endorse", ONE_HEAD_PER_STATE[1])
    gone = make_proposal(forum, lifecycle, state="in_review")
    act(forum, lifecycle, gone, "withdraw", AUTHOR)
    with session_scope(forum) as s:
        proposals = list(s.exec(select(Proposal).order_by(Proposal.id)))
        assert {p.id for p in proposals} == {*pids, partly, gone}
        handles = sorted({h for p in proposals for a in lifecycle.allowed(s, p, T0) for h in a.actors} | {"nobody"})
        assert len(handles) > 10
        for handle in handles:
            expected = [
                (p.id, [a for a in lifecycle.allowed(s, p, T0) if handle in a.actors])
                for p in proposals if handle in lifecycle.must_act(s, p, T0)
            ]
            assert [(p.id, mine) for p, mine in lifecycle.waiting_on(s, proposals, handle, T0)] == expected, handle
        undecided = {p.id for p, _ in lifecycle.waiting_on(s, proposals, ONE_HEAD_PER_STATE[2], T0)}
        assert undecided == {pids[2], partly}  # both rounds wait on a head who has not decided
        assert partly not in {p.id for p, _ in lifecycle.waiting_on(s, proposals, ONE_HEAD_PER_STATE[0], T0)}
