"""The forum's people read once per process: statements per action, and a new definition seen at once."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from config import ForumDefinition
from models import Lifecycle, session_scope, sync_definition
from models.errors import InvalidInputError, NotAllowedError, NotFoundError
from models.roster import People, people
from models.tables import DefinitionGeneration, Event, Proposal, ProposalCreate
from notifications.planning import Directory
from tests.models.conftest import counted

T0 = dt.datetime(2021, 3, 1, 9, 0, tzinfo=dt.UTC)
HEADS = ["wang.jianguo", "deshmukh", "seitkazieva", "toktogulov", "khan.ayesha", "petrov", "rakhimov", "karimov"]
# Statements of one action in the common case: read the proposal with the definition's generation, the
# conditional UPDATE, the event INSERT, and the decision (or progress report) INSERT where the action has one.
BUDGET = 4


def _draft(forum: Engine, lifecycle: Lifecycle) -> int:
    with session_scope(forum) as s:
        p = lifecycle.create_proposal(
            session=s, proposal_in=ProposalCreate(group="industry", author="zhao.lei", title="Grain"), now=T0,
        )
        assert p.id is not None
        return p.id


def test_actions_take_at_most_four_statements(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = _draft(forum, lifecycle)
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "submit", "zhao.lei", now=T0)  # warms the roster cache of this database
    # Every endorsement but the last (which completes consensus and records it as a second action).
    steps = [("recommend", "kuznetsov", None), *[("endorse", h, None) for h in HEADS[:-1]]]
    for action, actor, percent in steps:
        with session_scope(forum) as s, counted(forum) as seen:
            lifecycle.apply(s, pid, action, actor, percent=percent, now=T0)
        writes = [q for q in seen if not q.lstrip().upper().startswith(("SELECT", "BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))]
        assert len(seen) <= BUDGET, (action, seen)
        assert len([q for q in seen if q.lstrip().upper().startswith("SELECT")]) == 1, (action, seen)
        assert writes, (action, seen)
    with session_scope(forum) as s:
        assert s.get(Proposal, pid).state == "reviewed"  # type: ignore[union-attr]


def test_checks_still_hold_with_the_cached_roster(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = _draft(forum, lifecycle)
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "submit", "zhao.lei", now=T0 + dt.timedelta(hours=1))
    with session_scope(forum) as s, pytest.raises(InvalidInputError, match="earlier than its newest event"):
        lifecycle.apply(s, pid, "recommend", "kuznetsov", now=T0)
    with session_scope(forum) as s, pytest.raises(NotFoundError, match="member 'nobody' not found"):
        lifecycle.apply(s, pid, "recommend", "nobody", now=T0 + dt.timedelta(hours=1))
    with session_scope(forum) as s, pytest.raises(NotAllowedError):
        lifecycle.apply(s, pid, "recommend", "zhao.lei", now=T0 + dt.timedelta(hours=1))
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "recommend", "kuznetsov", now=T0 + dt.timedelta(hours=1))
        lifecycle.apply(s, pid, "endorse", HEADS[0], now=T0 + dt.timedelta(hours=2))
    with session_scope(forum) as s, pytest.raises(NotAllowedError):  # a head decides once a round
        lifecycle.apply(s, pid, "endorse", HEADS[0], now=T0 + dt.timedelta(hours=2))


def test_updated_at_is_the_newest_event_time_also_after_a_notice_written_earlier(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = _draft(forum, lifecycle)
    later = T0 + dt.timedelta(days=2)
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "submit", "zhao.lei", now=later)
    with session_scope(forum) as s:  # a system notice recorded at an earlier moment does not move it back
        p = s.get(Proposal, pid)
        assert p is not None
        lifecycle.notice(s, p, "remind", now=T0 + dt.timedelta(days=1), payload={})
    with session_scope(forum) as s:
        p = s.get(Proposal, pid)
        assert p is not None
        newest = max(e.at for e in s.exec(select(Event).where(Event.proposal_id == pid)))
        assert p.updated_at == newest == later
    with session_scope(forum) as s, pytest.raises(InvalidInputError, match="earlier than its newest event"):
        lifecycle.apply(s, pid, "recommend", "kuznetsov", now=later - dt.timedelta(seconds=1))


def test_the_roster_is_read_again_when_the_definition_changes(forum: Engine, definition: ForumDefinition) -> None:
    with session_scope(forum) as s:
        first = people(s)
        assert people(s) is first  # the same generation: the cached roster, not a new read
        generation = s.get(DefinitionGeneration, 1)
        assert generation is not None and generation.generation >= 1
        before = generation.generation
    groups = [g.model_copy(update={"chair": "petrov"}) if g.key == "industry" else g for g in definition.working_groups]
    changed = definition.model_copy(update={"working_groups": groups})
    with session_scope(forum) as s:
        sync_definition(s, changed)
    with session_scope(forum) as s:
        second = people(s)
        assert second is not first and second.groups["industry"].chair == "petrov"
        assert Directory.load(s).chairs["industry"] == "petrov"
        assert s.get(DefinitionGeneration, 1).generation == before + 1  # type: ignore[union-attr]


def test_a_database_never_synced_is_read_every_time(forum: Engine) -> None:
    with session_scope(forum) as s:
        row = s.get(DefinitionGeneration, 1)
        assert row is not None
        s.delete(row)
    with session_scope(forum) as s:
        one, two = people(s), people(s)
        assert isinstance(one, People) and one is not two and one.members.keys() == two.members.keys()
