"""Read side: plain dictionaries describing proposals, events and the forum, for every interface."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from models.db import unicode_lower
from models.errors import N_, InvalidInputError, NotFoundError, Said
from models.lifecycle import (
    Lifecycle,
    events_of,
    find_proposal,
    no_such_group,
    past_deadline,
    presiding_region,
    unknown_group,
    utc,
)
from models.tables import (
    MAX_PROPOSAL_ID,
    NUL,
    Event,
    GroupMembership,
    Member,
    PresidingTerm,
    ProgressReport,
    Proposal,
    ProposalText,
    Region,
    WorkingGroup,
)


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def proposal_row(p: Proposal, now: dt.datetime) -> dict[str, Any]:
    """A proposal as a flat dictionary (no history)."""
    return {
        "id": p.id,
        "title": p.title,
        "summary": p.summary,
        "group": p.group,
        "author": p.author,
        "state": p.state,
        "version": p.version,
        "text_version": p.text_version,
        "round": p.round,
        "percent": p.percent,
        "deadline": _iso(p.deadline),
        "overdue": past_deadline(p.deadline, now),
        "state_entered_at": _iso(p.state_entered_at),
        "presiding_region": p.presiding_region,
        "created_at": _iso(p.created_at),
        "updated_at": _iso(p.updated_at),
    }


def event_row(e: Event) -> dict[str, Any]:
    """An event as a flat dictionary."""
    return {
        "proposal_id": e.proposal_id,
        "seq": e.seq,
        "at": _iso(e.at),
        "action": e.action,
        "from_state": e.from_state or None,
        "to_state": e.to_state,
        "actor": e.actor,
        "comment": e.comment,
        "payload": e.payload,
    }


def get_proposal(session: Session, proposal_id: int) -> Proposal:
    """The proposal, or NotFoundError (also for an id out of the id column's range)."""
    return find_proposal(session, proposal_id)


def proposal_view(session: Session, lifecycle: Lifecycle, proposal_id: int, now: dt.datetime) -> dict[str, Any]:
    """Text (current version), state, deadline, allowed next actions with who may take them, and the history."""
    now = utc(now)
    p = get_proposal(session, proposal_id)
    view = proposal_row(p, now)
    view["body"] = p.body
    text = session.exec(
        select(ProposalText).where(ProposalText.proposal_id == p.id, ProposalText.version == p.text_version)
    ).first()
    view["text"] = {"version": p.text_version} | ({"author": text.author, "at": _iso(text.at)} if text else {})
    view["allowed"] = [
        {"action": a.action, "label": a.label, "actors": a.actors, "comment_required": a.comment_required}
        for a in lifecycle.allowed(session, p, now)
    ]
    view["history"] = [event_row(e) for e in events_of(session, proposal_id)]
    return view


# ---------------------------------------------------------------------------- finding proposals
SEARCH_MAX = 200  # characters of a text search
SEARCH_WORDS = 10


@dataclass(frozen=True)
class ProposalFilters:
    """What a list of proposals is narrowed to (every interface's list: web page, CSV, API, CLI).

    ``text``: every word must occur in the title, the summary or the body, in any case (Cyrillic too).
    ``overdue``: open proposals past their deadline.
    """

    state: str | None = None
    group: str | None = None
    overdue: bool = False
    text: str = ""

    @property
    def words(self) -> list[str]:
        """The search words, lower case."""
        return self.text.lower().split()

    def check(self, lifecycle: Lifecycle) -> ProposalFilters:
        """These filters with the text tidied, or InvalidInputError naming the first bad one."""
        wf = lifecycle.workflow
        if self.state and self.state not in wf.state_names:
            raise InvalidInputError(
                f"state: unknown state {self.state!r}; states: {', '.join(wf.state_names)}",
                Said(N_("There is no state “%(state)s”."), state=self.state),
            )
        groups = [g.key for g in lifecycle.definition.working_groups]
        if self.group and self.group not in groups:
            raise unknown_group(self.group, groups)
        text = " ".join(self.text.split())
        if len(text) > SEARCH_MAX:
            raise InvalidInputError(
                f"search: at most {SEARCH_MAX} characters",
                Said(N_("Search for at most %(n)s characters."), n=SEARCH_MAX),
            )
        if len(text.split()) > SEARCH_WORDS:
            raise InvalidInputError(
                f"search: at most {SEARCH_WORDS} words", Said(N_("Search for at most %(n)s words."), n=SEARCH_WORDS)
            )
        if NUL in text:
            raise InvalidInputError(
                "search: must not contain a NUL character", Said(N_("The search must not contain a NUL character."))
            )
        return ProposalFilters(self.state or None, self.group or None, self.overdue, text)


def _where(lifecycle: Lifecycle, filters: ProposalFilters, now: dt.datetime) -> list[ColumnElement[bool]]:
    """The WHERE conditions of ``filters`` (checked ones)."""
    conditions: list[ColumnElement[bool]] = []
    if filters.state:
        conditions.append(col(Proposal.state) == filters.state)
    if filters.group:
        conditions.append(col(Proposal.group) == filters.group)
    if filters.overdue:
        conditions += [col(Proposal.deadline) < now, col(Proposal.state).in_(lifecycle.open_states)]
    words = [
        or_(*(
            unicode_lower(field).contains(word, autoescape=True)  # % and _ are literal characters here
            for field in (col(Proposal.title), col(Proposal.summary), col(Proposal.body))
        ))
        for word in filters.words
    ]
    number = filters.text.removeprefix("#")
    if number.isdecimal() and number.isascii() and 0 < int(number) <= MAX_PROPOSAL_ID:  # "12" or "#12": that one too
        conditions.append(or_(col(Proposal.id) == int(number), and_(*words)))
    elif words:
        conditions.append(and_(*words))
    return conditions


def _filtered(lifecycle: Lifecycle, filters: ProposalFilters, now: dt.datetime) -> SelectOfScalar[Proposal]:
    conditions = _where(lifecycle, filters, now)
    return select(Proposal).where(and_(*conditions)) if conditions else select(Proposal)


def find_proposals(
    session: Session, lifecycle: Lifecycle, filters: ProposalFilters, *, now: dt.datetime, offset: int = 0,
    limit: int | None = None, newest_first: bool = False,
) -> list[Proposal]:
    """The proposals ``filters`` let through, by id (``newest_first``: highest id first), from ``offset``."""
    now = utc(now)
    order = col(Proposal.id).desc() if newest_first else col(Proposal.id)
    query = _filtered(lifecycle, filters.check(lifecycle), now).order_by(order).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query))


def count_proposals(session: Session, lifecycle: Lifecycle, filters: ProposalFilters, *, now: dt.datetime) -> int:
    """How many proposals ``filters`` let through."""
    conditions = _where(lifecycle, filters.check(lifecycle), utc(now))
    query = select(func.count()).select_from(Proposal)
    return session.exec(query.where(and_(*conditions)) if conditions else query).one()


@dataclass(frozen=True)
class ProposalPage:
    """One page of a filtered list: its rows, the page number, the page size and how many match in all."""

    rows: list[Proposal]
    page: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        """How many pages the whole list has (at least one, perhaps empty)."""
        return max(1, math.ceil(self.total / self.size))

    @property
    def first(self) -> int:
        """The position of the first row on this page in the whole list (1-based; 0 when empty)."""
        return (self.page - 1) * self.size + 1 if self.rows else 0

    @property
    def last(self) -> int:
        """The position of the last row on this page in the whole list."""
        return (self.page - 1) * self.size + len(self.rows)


MAX_PAGE = 1_000_000


def proposal_page(
    session: Session, lifecycle: Lifecycle, filters: ProposalFilters, *, now: dt.datetime, page: int = 1,
    size: int = 25, newest_first: bool = True,
) -> ProposalPage:
    """Page ``page`` (1-based) of the filtered list; NotFoundError past the last page (page 1 may be empty)."""
    if not 1 <= page <= MAX_PAGE:
        raise InvalidInputError(
            f"page: must be a whole number from 1 to {MAX_PAGE}",
            Said(N_("The page must be a whole number from 1 to %(n)s."), n=MAX_PAGE),
        )
    if size < 1:
        raise InvalidInputError("size: must be at least 1")
    filters = filters.check(lifecycle)
    total = count_proposals(session, lifecycle, filters, now=now)
    result = ProposalPage([], page, size, total)
    if page > result.pages:
        raise NotFoundError(
            f"page {page} not found: the list has {result.pages} page(s)",
            Said(N_("There is no page %(page)s: the list has %(pages)s."), page=page, pages=result.pages),
        )
    rows = find_proposals(
        session, lifecycle, filters, now=now, offset=(page - 1) * size, limit=size, newest_first=newest_first
    )
    return ProposalPage(rows, page, size, total)


def is_overdue(lifecycle: Lifecycle, proposal: Proposal, now: dt.datetime) -> bool:
    """Open and past its deadline (what the ``overdue`` filter lets through)."""
    return past_deadline(proposal.deadline, utc(now)) and proposal.state in lifecycle.open_states


def list_proposals(
    session: Session, lifecycle: Lifecycle, *, now: dt.datetime, state: str | None = None,
    group: str | None = None, overdue: bool = False, text: str = "",
) -> list[dict[str, Any]]:
    """Proposals filtered by state, group, overdue-ness and words of their text, by id."""
    now = utc(now)
    filters = ProposalFilters(state=state, group=group, overdue=overdue, text=text)
    return [proposal_row(p, now) for p in find_proposals(session, lifecycle, filters, now=now)]


def all_events(session: Session) -> list[dict[str, Any]]:
    """Every event, by proposal and sequence."""
    return [event_row(e) for e in session.exec(select(Event).order_by(col(Event.proposal_id), col(Event.seq)))]


def forum_summary(session: Session, lifecycle: Lifecycle, now: dt.datetime) -> dict[str, Any]:
    """The forum as stored: member states, regions, terms, groups, members, proposal counts."""
    now = utc(now)
    defn = lifecycle.definition
    regions = list(session.exec(select(Region).order_by(col(Region.code))))
    heads = {
        m.region: m.handle
        for m in session.exec(select(Member).where(Member.active))
        if "head_of_region" in m.role_set
    }
    groups = []
    for g in session.exec(select(WorkingGroup).where(WorkingGroup.active).order_by(col(WorkingGroup.key))):
        members = sorted(session.exec(select(GroupMembership.member).where(GroupMembership.group_key == g.key)))
        groups.append({"key": g.key, "name": g.name, "chair": g.chair, "deputy_chair": g.deputy_chair, "members": members})
    counts = dict(session.exec(select(Proposal.state, func.count()).group_by(Proposal.state)).all())
    terms = list(session.exec(select(PresidingTerm).order_by(col(PresidingTerm.start))))
    return {
        "forum": defn.forum.name,
        "member_states": defn.member_states,
        "regions": [{"code": r.code, "name": r.name, "country": r.country, "head": heads.get(r.code)} for r in regions],
        "presiding_terms": [
            {"region": t.region, "start": _iso(t.start), "end": _iso(t.end), "deputy": t.deputy} for t in terms
        ],
        "presiding_region_now": presiding_region(session, now),
        "presiding_gaps": presiding_gaps(terms),
        "working_groups": groups,
        "members": session.exec(select(func.count()).select_from(Member).where(Member.active)).one(),
        "proposals": {s: counts.get(s, 0) for s in lifecycle.workflow.state_names},
    }


def presiding_gaps(terms: list[PresidingTerm]) -> list[dict[str, Any]]:
    """The days no presiding term covers (between terms, and after the last), each with what to do about it.

    Nobody can approve on such a day: the definition needs a term for it.
    """
    ordered = sorted(terms, key=lambda t: t.start)
    gaps: list[dict[str, Any]] = []
    for before, after in itertools.pairwise(ordered):
        start, end = before.end + dt.timedelta(days=1), after.start - dt.timedelta(days=1)
        if start <= end:
            gaps.append({
                "from": _iso(start), "to": _iso(end),
                "message": f"no presiding term from {_iso(start)} to {_iso(end)}: add one to the forum definition",
            })
    if ordered:
        last = max(t.end for t in ordered)
        gaps.append({
            "from": _iso(last + dt.timedelta(days=1)), "to": None,
            "message": f"no presiding term after {_iso(last)}: add one to the forum definition",
        })
    else:
        gaps.append({"from": None, "to": None, "message": "no presiding term at all: add one to the forum definition"})
    return gaps


def mermaid(lifecycle: Lifecycle) -> str:
    """The workflow as a Mermaid state diagram."""
    wf = lifecycle.workflow
    lines = ["stateDiagram-v2", f"    [*] --> {wf.initial}"]
    for a in wf.actions:
        who = ", ".join(a.roles)
        for src in a.source:
            lines.append(f"    {src} --> {a.dest}: {a.name} ({who})")
    for s in wf.states:
        if s.final:
            lines.append(f"    {s.name} --> [*]")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- a working group
@dataclass(frozen=True)
class Measure:
    """A proposal being (or done being) implemented: its progress and its latest report."""

    proposal: Proposal
    percent: int
    reports: int
    last_report: ProgressReport | None


@dataclass(frozen=True)
class GroupOverview:
    """A working group as its chair follows it: people, proposals by state, overdue ones, measures."""

    group: WorkingGroup
    members: list[Member]
    by_state: list[tuple[str, list[Proposal]]]  # every state of the workflow, in its order
    overdue: list[Proposal]  # by deadline
    measures: list[Measure]  # in the progress state first, then done; by id

    @property
    def total(self) -> int:
        """How many proposals the group has."""
        return sum(len(rows) for _, rows in self.by_state)


def measure_states(lifecycle: Lifecycle) -> list[str]:
    """The state where progress is reported, then the final states an action leads to from it."""
    wf = lifecycle.workflow
    state = wf.progress.state
    done = [a.dest for a in wf.actions if state in a.source and a.dest in lifecycle.final_states]
    return [state, *dict.fromkeys(done)]


def group_overview(session: Session, lifecycle: Lifecycle, key: str, *, now: dt.datetime) -> GroupOverview:
    """The working group ``key`` and its proposals; NotFoundError for an unknown key."""
    now = utc(now)
    group = session.get(WorkingGroup, key) if len(key) <= 40 and NUL not in key else None
    if group is None:
        raise NotFoundError(f"working group {key!r} not found", no_such_group(key))
    handles = session.exec(select(GroupMembership.member).where(GroupMembership.group_key == key)).all()
    members = list(session.exec(select(Member).where(col(Member.handle).in_(handles)).order_by(col(Member.name))))
    proposals = list(session.exec(select(Proposal).where(Proposal.group == key).order_by(col(Proposal.id))))
    by_state = [(s, [p for p in proposals if p.state == s]) for s in lifecycle.workflow.state_names]
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    overdue = sorted((p for p in proposals if is_overdue(lifecycle, p, now)), key=lambda p: (p.deadline or far, p.id or 0))
    order = measure_states(lifecycle)
    ongoing = sorted((p for p in proposals if p.state in order), key=lambda p: (order.index(p.state), p.id or 0))
    return GroupOverview(group, members, by_state, overdue, _measures(session, ongoing))


def _measures(session: Session, proposals: list[Proposal]) -> list[Measure]:
    """Each proposal with its number of progress reports and its latest one."""
    ids = [p.id for p in proposals]
    reports: dict[int, list[ProgressReport]] = {}
    if ids:
        query = select(ProgressReport).where(col(ProgressReport.proposal_id).in_(ids))
        for r in session.exec(query.order_by(col(ProgressReport.at), col(ProgressReport.id))):
            reports.setdefault(r.proposal_id, []).append(r)
    measures = []
    for p in proposals:
        mine = reports.get(p.id or 0, [])
        measures.append(Measure(p, max(0, min(100, p.percent)), len(mine), mine[-1] if mine else None))
    return measures


def member_names(session: Session) -> dict[str, str]:
    """Every member's name by handle (inactive ones too: they may have written proposals)."""
    return dict(session.exec(select(Member.handle, Member.name)).all())
