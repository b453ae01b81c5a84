"""Read side: plain dictionaries describing proposals, events and the forum, for every interface."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from models.lifecycle import Lifecycle, events_of, find_proposal, presiding_region, utc
from models.tables import Event, GroupMembership, Member, PresidingTerm, Proposal, ProposalText, Region, WorkingGroup


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
        "overdue": bool(p.deadline and p.deadline < now),
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


def list_proposals(
    session: Session, lifecycle: Lifecycle, *, now: dt.datetime, state: str | None = None,
    group: str | None = None, overdue: bool = False,
) -> list[dict[str, Any]]:
    """Proposals filtered by state, group and overdue-ness, by id."""
    now = utc(now)
    query = select(Proposal)
    if state:
        query = query.where(Proposal.state == state)
    if group:
        query = query.where(Proposal.group == group)
    if overdue:
        query = query.where(col(Proposal.deadline) < now, col(Proposal.state).in_(lifecycle.open_states))
    return [proposal_row(p, now) for p in session.exec(query.order_by(col(Proposal.id)))]


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
