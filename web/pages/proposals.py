"""The list of proposals: filters (state, working group, overdue, words), pages, and a CSV of what is shown.

The page and the CSV build their rows with the same function (``shown_rows``), so the CSV of a page holds
exactly the rows, texts and order the page shows, plus each proposal's absolute link and its deadline in
UTC. The CSV is UTF-8 with a byte order mark: without it Excel reads Cyrillic and Chinese as mojibake.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlmodel import Session

from models.queries import (
    SEARCH_MAX,
    ProposalFilters,
    ProposalPage,
    find_proposals,
    is_overdue,
    member_names,
    proposal_page,
)
from models.tables import Proposal
from web.deps import DbSession, MemberPage, Now, Page
from web.routing import OneHopRoute

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)

PAGE_SIZE = 25
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): such cells get a '.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"

StateQ = Annotated[str, Query(max_length=40)]
GroupQ = Annotated[str, Query(max_length=40)]
SearchQ = Annotated[str, Query(max_length=SEARCH_MAX * 4)]  # spaces are squeezed before the real limit is checked


@dataclass(frozen=True)
class ShownRow:
    """One proposal as the list shows it (and the CSV writes it)."""

    id: int
    title: str
    group: str
    state: str
    deadline: str  # in the reader's zone, or ""
    deadline_utc: str  # YYYY-MM-DD HH:MM, or ""
    overdue: bool
    author: str
    url: str


def shown_rows(page: Page, session: Session, rows: list[Proposal], now: dt.datetime) -> list[ShownRow]:
    """The rows as the reader sees them: labels in their language, deadlines in their zone, names of people."""
    runtime = page.state.runtime
    groups = page.group_names
    names = member_names(session)
    base = page.state.settings.base_url
    shown = []
    for p in rows:
        assert p.id is not None
        shown.append(ShownRow(
            id=p.id,
            title=p.title,
            group=groups.get(p.group, p.group),
            state=page.ui.state(p.state),
            deadline=page.ui.when(p.deadline) if p.deadline else "",
            deadline_utc=f"{p.deadline:%Y-%m-%d %H:%M}" if p.deadline else "",
            overdue=is_overdue(runtime.lifecycle, p, now),
            author=names.get(p.author, p.author),
            url=f"{base}/proposals/{p.id}",
        ))
    return shown


def filter_query(filters: ProposalFilters) -> dict[str, str]:
    """The query parameters that repeat ``filters`` (only those set)."""
    query = {"state": filters.state or "", "group": filters.group or "", "search": filters.text}
    if filters.overdue:
        query["overdue"] = "1"
    return {k: v for k, v in query.items() if v}


def link(path: str, query: dict[str, str], **extra: int) -> str:
    """``path`` with ``query`` and ``extra`` (page numbers) as its query string."""
    full = query | {k: str(v) for k, v in extra.items()}
    return f"{path}?{urlencode(full)}" if full else path


def _filters(state: str, group: str, overdue: bool, search: str) -> ProposalFilters:
    return ProposalFilters(state=state or None, group=group or None, overdue=overdue, text=search)


@router.get("/proposals")
def proposals_page(
    page: MemberPage, db: DbSession, now: Now, state: StateQ = "", group: GroupQ = "", overdue: bool = False,
    search: SearchQ = "", number: Annotated[int, Query(alias="page")] = 1,
) -> Response:
    """Proposals, newest first, a page at a time, narrowed by the filters; links keep the filters."""
    runtime = page.state.runtime
    filters = _filters(state, group, overdue, search).check(runtime.lifecycle)
    result: ProposalPage = proposal_page(db, runtime.lifecycle, filters, now=now, page=number, size=PAGE_SIZE)
    query = filter_query(filters)
    links = {
        "first": link("/proposals", query) if result.page > 1 else "",
        "prev": link("/proposals", query, page=result.page - 1) if result.page > 1 else "",
        "next": link("/proposals", query, page=result.page + 1) if result.page < result.pages else "",
        "last": link("/proposals", query, page=result.pages) if result.page < result.pages else "",
        "csv_page": link("/proposals.csv", query, page=result.page),
        "csv_all": link("/proposals.csv", query),
        "unfiltered": "/proposals",
    }
    return page.render(
        "proposals.html",
        rows=shown_rows(page, db, result.rows, now), result=result, filters=filters, links=links,
        states=[(s, page.ui.state(s)) for s in runtime.lifecycle.workflow.state_names],
        groups=list(page.group_names.items()),
        search_max=SEARCH_MAX, filtered=bool(query),
    )


def spreadsheet_safe(value: str) -> str:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading apostrophe."""
    return "'" + value if value.startswith(FORMULA_START) else value


def csv_text(page: Page, rows: list[ShownRow]) -> str:
    """The rows as CSV (RFC 4180, CRLF), headers in the reader's language, with the byte order mark."""
    _ = page.ui.gettext
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([
        _("Number"), _("Title"), _("Working group"), _("State"), _("Deadline"), _("Deadline (UTC)"), _("Overdue"),
        _("Author"), _("Link"),
    ])
    for r in rows:
        cells = [
            str(r.id), r.title, r.group, r.state, r.deadline, r.deadline_utc, _("Overdue") if r.overdue else "",
            r.author, r.url,
        ]
        writer.writerow([spreadsheet_safe(c) for c in cells])
    return BOM + out.getvalue()


@router.get("/proposals.csv")
def proposals_csv(
    page: MemberPage, db: DbSession, now: Now, state: StateQ = "", group: GroupQ = "", overdue: bool = False,
    search: SearchQ = "", number: Annotated[int | None, Query(alias="page")] = None,
) -> Response:
    """The CSV of one page of the list (``page=N``, as the page shows it) or, without ``page``, of every match."""
    runtime = page.state.runtime
    filters = _filters(state, group, overdue, search).check(runtime.lifecycle)
    if number is None:
        rows = find_proposals(db, runtime.lifecycle, filters, now=now, newest_first=True)
        name = "proposals.csv"
    else:
        rows = proposal_page(db, runtime.lifecycle, filters, now=now, page=number, size=PAGE_SIZE).rows
        name = f"proposals-page-{number}.csv"
    body = csv_text(page, shown_rows(page, db, rows, now))
    return Response(
        body.encode("utf-8"), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
