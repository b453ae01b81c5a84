"""The read side of one proposal in full: its endorsement round as a board of member states, progress reports, names.

Plain reads for the proposal's page (and any other interface); nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from models.errors import NotFoundError
from models.lifecycle import Lifecycle, _heads
from models.tables import MAX_PROPOSAL_ID, EndorsementDecision, Event, Member, ProgressReport, Proposal

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


# Built once (building a statement costs more than running it).
_d = EndorsementDecision
_ROUND = (
    select(_d).where(col(_d.proposal_id) == bindparam("proposal_id"), col(_d.round) == bindparam("round"))
    .order_by(col(_d.at), col(_d.id))
)
# In an open round only the decisions on the text under review count.
_OPEN_ROUND = _ROUND.where(col(_d.text_version) == bindparam("text_version"))
_PROPOSAL = select(Proposal).where(col(Proposal.id) == bindparam("proposal_id"))
_EVENTS = select(Event).where(col(Event.proposal_id) == bindparam("proposal_id")).order_by(col(Event.seq))
_REPORTS = (
    select(ProgressReport).where(col(ProgressReport.proposal_id) == bindparam("proposal_id"))
    .order_by(col(ProgressReport.at), col(ProgressReport.id))
)


def proposal_of(session: Session, proposal_id: int) -> Proposal:
    """The proposal, or NotFoundError (also for an id no proposal row can have): ``find_proposal`` on a prebuilt
    statement, for a request that has not read the row yet."""
    if not 0 < proposal_id <= MAX_PROPOSAL_ID:
        raise NotFoundError(f"proposal {proposal_id} not found")
    proposal = session.exec(_PROPOSAL, params={"proposal_id": proposal_id}).first()
    if proposal is None:
        raise NotFoundError(f"proposal {proposal_id} not found")
    return proposal


def timeline(session: Session, proposal_id: int) -> list[Event]:
    """A proposal's events in order (as ``events_of``, on a prebuilt statement)."""
    return list(session.exec(_EVENTS, params={"proposal_id": proposal_id}))


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
    if is_open:
        decisions = list(session.exec(_OPEN_ROUND, params=params | {"text_version": proposal.text_version}))
    else:
        decisions = list(session.exec(_ROUND, params=params))
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
