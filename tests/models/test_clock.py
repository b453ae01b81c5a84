"""Time cannot be written backwards; moments, ids and texts the database cannot hold are refused (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from config import Settings
from models import ConflictError, InvalidInputError, Lifecycle, NotFoundError, session_scope
from models.clock import check_recorded_at, newest_event_at
from models.queries import proposal_view
from models.review import sweep
from models.tables import Event, Proposal, ProposalCreate
from notifications import dispatch_once
from tests.factories import AUTHOR, CHAIR, T0, load, make_proposal

DAY = dt.timedelta(days=1)
IN_2026 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def event_count(engine: Engine) -> int:
    with session_scope(engine) as s:
        return s.exec(select(func.count()).select_from(Event)).one()


def test_review_and_dispatch_refuse_a_moment_before_the_newest_event(forum: Engine, lifecycle: Lifecycle, tmp_path: Path) -> None:
    pid = make_proposal(forum, lifecycle, state="endorsed", now=IN_2026)
    assert load(forum, pid).presiding_region == "KZ-55"
    before, events = load(forum, pid), event_count(forum)
    back = dt.datetime(2022, 6, 1, tzinfo=dt.UTC)
    with pytest.raises(InvalidInputError) as refused:
        sweep(forum, lifecycle, back)
    assert str(refused.value) == (
        "review at 2022-06-01T00:00:00+00:00 is earlier than the newest recorded event (2026-03-02T09:00:00+00:00): "
        "time cannot be written backwards"
    )
    with pytest.raises(InvalidInputError, match=r"^dispatch at 2022-06-01T00:00:00\+00:00 is earlier than the newest"):
        dispatch_once(forum, Settings(data_dir=tmp_path), lifecycle, now=back)
    # No back-dated hand-over to RU-CHE: the proposal and the log are as they were.
    assert load(forum, pid) == before and event_count(forum) == events
    # At the newest event's moment, and later, the review runs.
    assert sweep(forum, lifecycle, IN_2026).events == 0
    with session_scope(forum) as s:
        assert newest_event_at(s) == IN_2026 and newest_event_at(s, pid) == IN_2026


def test_an_action_is_never_recorded_before_its_proposals_newest_event(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review", now=T0)
    other = make_proposal(forum, lifecycle, state="in_review", now=T0 + 30 * DAY)  # newer events elsewhere do not matter
    with session_scope(forum) as s, pytest.raises(InvalidInputError) as refused:
        lifecycle.apply(s, pid, "recommend", CHAIR, now=T0 - dt.timedelta(minutes=1))
    assert str(refused.value) == (
        f"proposal {pid}: 2021-03-01T08:59:00+00:00 is earlier than its newest event (2021-03-01T09:00:00+00:00): "
        "an action cannot be recorded before it"
    )
    assert load(forum, pid).state == "in_review"
    # A request that read the proposal before a later one changed it, and arrives after it, lost a race: a conflict
    # (reload and try again), not a complaint about its time.
    read = load(forum, pid).version
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "return", CHAIR, comment="Later one", now=T0 + 2 * dt.timedelta(minutes=1))
    with session_scope(forum) as s, pytest.raises(ConflictError, match="changed since it was read"):
        lifecycle.apply(s, pid, "recommend", CHAIR, now=T0 + dt.timedelta(minutes=1), expected_version=read)
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "submit", AUTHOR, now=T0 + 3 * dt.timedelta(minutes=1))
    # Back-dated after its own newest event but before the other's: recorded at that moment, deadline from it.
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "recommend", CHAIR, now=T0 + DAY)
    p = load(forum, pid)
    assert (p.state, p.state_entered_at, p.deadline) == ("reviewed", T0 + DAY, T0 + 22 * DAY)
    assert load(forum, other).state == "in_review"


def test_an_approval_recorded_after_the_fact_belongs_to_the_term_then_in_force(forum: Engine, lifecycle: Lifecycle) -> None:
    meeting = dt.datetime(2022, 12, 20, 10, 0, tzinfo=dt.UTC)
    pid = make_proposal(forum, lifecycle, state="endorsed", now=meeting - 3 * DAY)
    assert load(forum, pid).presiding_region == "RU-CHE"
    with session_scope(forum) as s, pytest.raises(Exception, match="only the head of the presiding region RU-CHE"):
        lifecycle.apply(s, pid, "approve", "nurlanov", now=meeting)  # KZ-55 presides only from 2026
    with session_scope(forum) as s:
        (ev,) = lifecycle.apply(s, pid, "approve", "petrov", now=meeting)
    assert ev.at == meeting and load(forum, pid).state == "implementing"


def test_a_moment_given_after_the_fact_may_not_lie_ahead_of_the_clock() -> None:
    wall = IN_2026
    assert check_recorded_at(wall - DAY, wall) == wall - DAY
    assert check_recorded_at(wall, wall) == wall
    with pytest.raises(InvalidInputError, match=r"2026-03-02T09:00:01\+00:00 is in the future"):
        check_recorded_at(wall + dt.timedelta(seconds=1), wall)


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
        dt.datetime(3000, 1, 1, tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 23, 59, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.timezone(-dt.timedelta(hours=5))),  # past datetime's end in UTC
    ],
)
def test_moments_outside_the_calendar_are_refused_before_anything_is_written(
    forum: Engine, lifecycle: Lifecycle, moment: dt.datetime
) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    events = event_count(forum)
    with pytest.raises(InvalidInputError, match="is outside the years 1970 to 2999"):
        sweep(forum, lifecycle, moment)
    with session_scope(forum) as s, pytest.raises(InvalidInputError, match="is outside the years"):
        lifecycle.apply(s, pid, "recommend", CHAIR, now=moment)
    with session_scope(forum) as s, pytest.raises(InvalidInputError, match="is outside the years"):
        lifecycle.create_proposal(session=s, proposal_in=ProposalCreate(group="industry", author=AUTHOR, title="t"), now=moment)
    assert event_count(forum) == events


@pytest.mark.parametrize("pid", [2**31 - 1, 2**31, 2**63 - 1, 2**63, 10**20, 0, -1])
def test_ids_no_row_can_have_are_not_found(forum: Engine, lifecycle: Lifecycle, pid: int) -> None:
    with session_scope(forum) as s:
        with pytest.raises(NotFoundError, match=f"^proposal {pid} not found$"):
            proposal_view(s, lifecycle, pid, T0)
        with pytest.raises(NotFoundError, match=f"^proposal {pid} not found$"):
            lifecycle.apply(s, pid, "submit", AUTHOR, now=T0)


@pytest.mark.parametrize("field", ["title", "summary", "body", "group", "author"])
def test_a_nul_character_in_a_new_proposal_is_refused(field: str) -> None:
    data = {"group": "industry", "author": AUTHOR, "title": "t", "summary": "s", "body": "b"}
    data[field] = f"{data[field]}\x00more"
    with pytest.raises(ValidationError) as refused:
        ProposalCreate(**data)
    (error,) = refused.value.errors()
    assert error["loc"] == (field,) and "must not contain a NUL character" in error["msg"]


def test_a_nul_character_in_a_comment_is_refused_on_both_backends(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    with session_scope(forum) as s, pytest.raises(InvalidInputError, match=r"^comment must not contain a NUL character$"):
        lifecycle.apply(s, pid, "return", CHAIR, comment="see\x00attached", now=T0 + DAY)
    p = load(forum, pid)
    assert p.state == "in_review" and p.version == 2
    with session_scope(forum) as s:
        assert s.exec(select(func.count()).select_from(Proposal)).one() == 1
