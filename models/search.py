"""Finding proposals for the API: the list's filters (``models.queries.ProposalFilters``, the same as the pages and
the command line use: every word anywhere in the title, summary or body, in any case and script, or a proposal's
number), counted and paged by ``limit`` and ``offset``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session

from models.errors import InvalidInputError
from models.lifecycle import Lifecycle
from models.queries import SEARCH_MAX, ProposalFilters, count_proposals, find_proposals
from models.tables import Proposal

QUERY_MAX = SEARCH_MAX
LIMIT_MAX = 100
# Far beyond any forum, far below the 64-bit limits of OFFSET on both backends.
OFFSET_MAX = 10**9


@dataclass(frozen=True)
class SearchResult:
    """One page of matching proposals (by id) and how many match in all."""

    items: list[Proposal]
    total: int
    limit: int
    offset: int


def search_proposals(
    session: Session, lifecycle: Lifecycle, *, now: dt.datetime, state: str | None = None, group: str | None = None,
    overdue: bool = False, q: str | None = None, limit: int = 20, offset: int = 0,
) -> SearchResult:
    """Proposals matching every filter given, by id, ``limit`` from ``offset``; InvalidInputError on a bad filter.

    ``overdue`` keeps open proposals whose deadline has passed at ``now``.
    """
    if not 1 <= limit <= LIMIT_MAX:
        raise InvalidInputError(f"limit: between 1 and {LIMIT_MAX}")
    if not 0 <= offset <= OFFSET_MAX:
        raise InvalidInputError(f"offset: between 0 and {OFFSET_MAX}")
    filters = ProposalFilters(state or None, group or None, overdue, q or "").check(lifecycle)
    total = count_proposals(session, lifecycle, filters, now=now)
    items = find_proposals(session, lifecycle, filters, now=now, offset=offset, limit=limit)
    return SearchResult(items, total, limit, offset)
