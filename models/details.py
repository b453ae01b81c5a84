"""The read side of one proposal in full: its endorsement round as a board of member states, progress reports, names.

Plain reads for the proposal's page (and any other interface); nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, and_, bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from models.db import flushed_connection
from models.errors import NotFoundError
from models.lifecycle import Lifecycle, _heads, proposal_in_row, proposal_not_found
from models.roster import People, people, token_column
from models.tables import MAX_PROPOSAL_ID, EndorsementDecision, Event, Member, ProgressReport, Proposal, ProposalText
from models.texts import TextInfo

ENDORSED, OBJECTED, WAITING, NO_DECISION = "endorsed", "objected", "waiting", "no_decision"


@dataclass(frozen=True)
class Decision:
    """One head's decision in a round."""

    member: str
    region: str
    decision: str  # endorse | object
    at: dt.datetime
    text_version: int


@dataclass
class StateOnBoard:
    """A member state taking part in a round: where it stands and its heads' decisions."""

    country: str
    status: str  # endorsed | objected | waiting (open round) | no_decision (closed round)
    heads: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


@dataclass(frozen=True)
class Board:
    """An endorsement round: open or closed, its deadline (open), the text it concerns, its member states."""

    round: int
    open: bool
    deadline: dt.datetime | None
    text_version: int
    states: list[StateOnBoard]

    def count(self, status: str) -> int:
        """How many member states stand at ``status``."""
        return sum(1 for s in self.states if s.status == status)

    @property
    def decided(self) -> dict[str, str]:
        """The decisions that count in the round in progress, by member (``{}`` once the round is closed): what
        ``Lifecycle.allowed`` reads for the round (decisions on the text under review)."""
        if not self.open:
            return {}
        return {d.member: d.decision for row in self.states for d in row.decisions}


@dataclass(frozen=True)
class ProposalRead:
    """A proposal as its page and the API read it: the row, its current text version's author and time, the people."""

    proposal: Proposal
    text: TextInfo
    people: People


# Built once (building a statement costs more than running it). Core statements on the session's connection where
# the rows are only read: no ORM instances to build for them.
_d = EndorsementDecision.__table__  # type: ignore[attr-defined]
_ROUND = (
    sa_select(_d.c.member, _d.c.region, _d.c.country, _d.c.decision, _d.c.at, _d.c.text_version)
    .where(_d.c.proposal_id == bindparam("proposal_id"), _d.c.round == bindparam("round"))
    .order_by(_d.c.at, _d.c.id)
)
# In an open round only the decisions on the text under review count.
_OPEN_ROUND = _ROUND.where(_d.c.text_version == bindparam("text_version"))
_p, _t, _e = Proposal.__table__, ProposalText.__table__, Event.__table__  # type: ignore[attr-defined]
# The proposal's columns in table order, the definition's generation token (for the roster), and the author and
# time of its current text version (NULL when that row is missing).
_PROPOSAL_READ = (
    sa_select(*_p.columns, token_column().label("generation_token"), _t.c.author.label("text_author"), _t.c.at.label("text_at"))
    .select_from(_p.outerjoin(_t, and_(_t.c.proposal_id == _p.c.id, _t.c.version == _p.c.text_version)))
    .where(_p.c.id == bindparam("proposal_id"))
)
_EVENTS = (
    sa_select(_e.c.seq, _e.c.action, _e.c.from_state, _e.c.to_state, _e.c.actor, _e.c.at, _e.c.comment, _e.c.payload)
    .where(_e.c.proposal_id == bindparam("proposal_id")).order_by(_e.c.seq)
)
_REPORTS = (
    select(ProgressReport).where(col(ProgressReport.proposal_id) == bindparam("proposal_id"))
    .order_by(col(ProgressReport.at), col(ProgressReport.id))
)


def proposal_read(session: Session, proposal_id: int) -> ProposalRead:
    """The proposal (NotFoundError when there is none, also for an id no proposal row can have), its current text
    version (as ``text_info``) and the forum's people (as ``people``), in one statement.

    The proposal is as ``proposal_in_row`` gives it (the session's copy, else one only the caller holds).
    """
    if not 0 < proposal_id <= MAX_PROPOSAL_ID:
        raise proposal_not_found(proposal_id)
    row = flushed_connection(session).execute(_PROPOSAL_READ, {"proposal_id": proposal_id}).first()
    if row is None:
        raise proposal_not_found(proposal_id)
    proposal = proposal_in_row(session, row)
    token, text_author, text_at = row[len(_p.columns):]
    if text_author is None:
        raise NotFoundError(f"proposal {proposal.id} has no text version {proposal.text_version}")
    return ProposalRead(proposal, TextInfo(proposal.text_version, text_author, text_at), people(session, token, known=True))


def timeline(session: Session, proposal_id: int) -> list[Row[Any]]:
    """A proposal's events in order (as ``events_of``, on a prebuilt statement): rows with the columns of ``Event``
    that show what happened (seq, action, from_state, to_state, actor, at, comment, payload)."""
    return list(session.connection().execute(_EVENTS, {"proposal_id": proposal_id}))


def endorsement_board(
    session: Session, lifecycle: Lifecycle, proposal: Proposal, member_states: list[str],
    heads: Mapping[str, Member] | None = None,
) -> Board | None:
    """The proposal's current endorsement round, or its latest closed one; None before any round.

    ``heads``: the active heads of region with a region, by handle, when the caller has them (the roster's
    ``People.heads``); read here otherwise.

    Member states take part when they have an active head of region (as for consensus); a state has endorsed
    when one of its heads endorsed, objected when one objected. In an open round only decisions on the text
    under review count (endorsements belong to their text).
    """
    if proposal.round < 1:
        return None
    is_open = proposal.state == lifecycle.workflow.endorsement.state
    params = {"proposal_id": proposal.id, "round": proposal.round}
    connection = session.connection()
    if is_open:
        decisions = list(connection.execute(_OPEN_ROUND, params | {"text_version": proposal.text_version}))
    else:
        decisions = list(connection.execute(_ROUND, params))
    if heads is None:
        heads = _heads(session)
    by_country: dict[str, StateOnBoard] = {}
    order = {c: i for i, c in enumerate(member_states)}
    for handle, head in sorted(heads.items()):
        country = (head.region or "").split("-")[0]
        by_country.setdefault(country, StateOnBoard(country, WAITING if is_open else NO_DECISION)).heads.append(handle)
    for dec in decisions:
        row = by_country.setdefault(dec.country, StateOnBoard(dec.country, WAITING if is_open else NO_DECISION))
        row.decisions.append(Decision(dec.member, dec.region, dec.decision, dec.at, dec.text_version))
    for row in by_country.values():
        kinds = {x.decision for x in row.decisions}
        if "object" in kinds:
            row.status = OBJECTED
        elif "endorse" in kinds:
            row.status = ENDORSED
    states = sorted(by_country.values(), key=lambda r: (order.get(r.country, len(order)), r.country))
    text_version = proposal.text_version if is_open else max((x.text_version for x in decisions), default=proposal.text_version)
    return Board(proposal.round, is_open, proposal.deadline if is_open else None, text_version, states)


def progress_reports(session: Session, proposal_id: int) -> list[ProgressReport]:
    """A proposal's progress reports, oldest first."""
    return list(session.exec(_REPORTS, params={"proposal_id": proposal_id}))


def member_names(session: Session) -> dict[str, str]:
    """Every member's name by handle (members who left included: the history names them)."""
    return {m.handle: m.name for m in session.exec(select(Member))}
