"""Finding proposals: filters (state, working group, overdue, text), counted and paged, for the API and other readers.

The text search matches words anywhere in the title, summary or body, case-insensitively in every script
(Cyrillic and Chinese included: SQLite's own ``lower`` folds ASCII only, so it gets Python's), and a
number also finds the proposal with that id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from models.clock import utc
from models.errors import InvalidInputError
from models.lifecycle import Lifecycle
from models.tables import MAX_PROPOSAL_ID, NUL, Proposal, WorkingGroup

QUERY_MAX = 200
LIMIT_MAX = 100
# Far beyond any forum, far below the 64-bit limits of OFFSET on both backends.
OFFSET_MAX = 10**9
_FOLD = "forumflow_lower"


@dataclass(frozen=True)
class SearchResult:
    """One page of matching proposals (by id) and how many match in all."""

    items: list[Proposal]
    total: int
    limit: int
    offset: int


def _fold(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def _lower(session: Session) -> Any:
    """``lower`` that folds every script: PostgreSQL's own; on SQLite a Python function registered on the connection."""
    if session.get_bind().dialect.name != "sqlite":
        return func.lower
    raw = session.connection().connection.driver_connection
    raw.create_function(_FOLD, 1, _fold, deterministic=True)  # type: ignore[union-attr]
    return getattr(func, _FOLD)


def _text_filter(session: Session, q: str) -> ColumnElement[bool]:
    lower = _lower(session)
    needle = q.lower()
    matches = [lower(col(c)).contains(needle, autoescape=True) for c in (Proposal.title, Proposal.summary, Proposal.body)]
    number = q.removeprefix("#")
    if number.isdecimal() and number.isascii() and 0 < int(number) <= MAX_PROPOSAL_ID:
        matches.append(col(Proposal.id) == int(number))
    return or_(*matches)


def check_query(q: str | None) -> str | None:
    """The search text trimmed (None when blank); InvalidInputError when too long or holding a NUL character."""
    if q is None:
        return None
    q = " ".join(q.split())
    if len(q) > QUERY_MAX:
        raise InvalidInputError(f"q: at most {QUERY_MAX} characters")
    if NUL in q:
        raise InvalidInputError("q: must not contain a NUL character")
    return q or None


def search_proposals(
    session: Session, lifecycle: Lifecycle, *, now: dt.datetime, state: str | None = None, group: str | None = None,
    overdue: bool = False, q: str | None = None, limit: int = 20, offset: int = 0,
) -> SearchResult:
    """Proposals matching every filter given, by id, ``limit`` from ``offset``; InvalidInputError on a bad filter.

    ``overdue`` keeps open proposals whose deadline has passed at ``now``.
    """
    now = utc(now)
    if not 1 <= limit <= LIMIT_MAX:
        raise InvalidInputError(f"limit: between 1 and {LIMIT_MAX}")
    if not 0 <= offset <= OFFSET_MAX:
        raise InvalidInputError(f"offset: between 0 and {OFFSET_MAX}")
    if state is not None and state not in lifecycle.workflow.state_names:
        raise InvalidInputError(f"state: unknown state {state!r}; states: {', '.join(lifecycle.workflow.state_names)}")
    if group is not None and (NUL in group or session.get(WorkingGroup, group) is None):
        raise InvalidInputError(f"group: unknown working group {group!r}")
    q = check_query(q)
    where: list[ColumnElement[bool]] = []
    if state is not None:
        where.append(col(Proposal.state) == state)
    if group is not None:
        where.append(col(Proposal.group) == group)
    if overdue:
        where += [col(Proposal.deadline) < now, col(Proposal.state).in_(lifecycle.open_states)]
    if q:
        where.append(_text_filter(session, q))
    total = session.exec(select(func.count()).select_from(Proposal).where(*where)).one()
    items = session.exec(select(Proposal).where(*where).order_by(col(Proposal.id)).limit(limit).offset(offset)).all()
    return SearchResult(list(items), int(total), limit, offset)
