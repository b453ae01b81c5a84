"""Rules about time: which moments the engine accepts, and that time cannot be written backwards.

Every model entry point turns its ``now`` into UTC through ``utc``, which also refuses moments outside the
years the engine works in (deadlines and review horizons are computed by adding days; near the end of
Python's calendar that overflows). The review and the dispatch refuse a moment earlier than the newest
recorded event, an action is never recorded before its proposal's newest event, and a moment given after
the fact (``act --at``) may not lie ahead of the interface's wall clock.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.errors import InvalidInputError

# The engine's calendar: far enough either side of any forum's life, far from datetime's limits.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)


def shown(value: dt.datetime) -> str:
    """A moment for a message: ISO 8601 in UTC, to the second."""
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; InvalidInputError when it is naive or outside the years 1970 to 2999."""
    if value.tzinfo is None:
        raise InvalidInputError("time must be timezone-aware (UTC)")
    try:
        value = value.astimezone(dt.UTC)
    except OverflowError:  # an offset that pushes it past datetime's limits
        raise InvalidInputError(f"time {value.isoformat()} is outside the years {EARLIEST.year} to {LATEST.year}") from None
    if not EARLIEST <= value <= LATEST:
        raise InvalidInputError(f"time {shown(value)} is outside the years {EARLIEST.year} to {LATEST.year}")
    return value


def newest_event_at(session: Session, proposal_id: int | None = None) -> dt.datetime | None:
    """The moment of the newest recorded event (of one proposal, or of all), or None when there is none."""
    from models.tables import Event

    query = select(func.max(Event.at))
    if proposal_id is not None:
        query = query.where(Event.proposal_id == proposal_id)
    # max() keeps the column's type: the value comes back as an aware UTC datetime on every backend.
    return session.exec(query).one()


def check_run_time(engine: Engine, now: dt.datetime, *, run: str) -> dt.datetime:
    """``now`` in UTC for a ``run`` (review, dispatch); InvalidInputError when it lies before the newest recorded event."""
    now = utc(now)
    with Session(engine) as session:
        newest = newest_event_at(session)
    if newest is not None and now < newest:
        raise InvalidInputError(
            f"{run} at {shown(now)} is earlier than the newest recorded event ({shown(newest)}): time cannot be written backwards"
        )
    return now


def check_action_time(session: Session, proposal_id: int, now: dt.datetime) -> dt.datetime:
    """``now`` in UTC for an action on a proposal; InvalidInputError when it lies before the proposal's newest event."""
    now = utc(now)
    newest = newest_event_at(session, proposal_id)
    if newest is not None and now < newest:
        raise InvalidInputError(
            f"proposal {proposal_id}: {shown(now)} is earlier than its newest event ({shown(newest)}): "
            "an action cannot be recorded before it"
        )
    return now


def check_recorded_at(at: dt.datetime, wall_clock: dt.datetime) -> dt.datetime:
    """A moment given to record something after the fact, in UTC; InvalidInputError when it lies ahead of ``wall_clock``."""
    at, wall_clock = utc(at), utc(wall_clock)
    if at > wall_clock:
        raise InvalidInputError(f"{shown(at)} is in the future (now is {shown(wall_clock)}): record only what has happened")
    return at
