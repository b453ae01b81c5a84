"""The scheduled review: reminders, escalations, the silence procedure, term hand-over, progress reviews.

Plain functions of ``now``; flows/ only batches and schedules them. Every decision is a system event
written through the lifecycle in bulk (``notice_many``, ``close_rounds``), so notifications follow from the event log.

Each step of a proposal's review is identified by its anchor (the instant the proposal entered its state,
or its last progress report), a kind and a step number (reminder offset or escalation level). A step taken
is recorded in ``review_mark`` under a unique key, in the same transaction as its event: re-runs and
concurrent sweeps cannot issue it twice. ``review_cursor`` keeps, per proposal, the anchor and the instant
of its next step, so a sweep reads only rows that are due, with indexed range queries. ``next_due_each``
tells from the same rows when a sweep will next select a proposal, so a caller that is the only writer
(``forumflow simulate``) can leave out the sweeps that would find nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import weakref
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlalchemy import CompoundSelect, Date, Index, Select, String, UniqueConstraint, and_, bindparam, func, insert, or_, union
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import defer
from sqlmodel import Field, Session, SQLModel, col, select

from config.definition import StateDef, Workflow
from models.clock import check_run_time
from models.db import UTCDateTime, session_scope, utc_field
from models.errors import ConflictError
from models.lifecycle import Lifecycle, Notice, Roster, utc
from models.roster import people, token_column
from models.tables import Event, PresidingTerm, Proposal

log = logging.getLogger(__name__)

REMIND, ESCALATE, SILENCE, PROGRESS_DUE, HANDOVER = "remind", "escalate", "silence", "progress_due", "handover"
DEFAULT_BATCH = 500
# A batch that meets a concurrent change is rolled back and read again this many times.
ATTEMPTS = 3


class ReviewMark(SQLModel, table=True):
    """A review step taken for a proposal: issued (with its event) or skipped as overtaken; once per key."""

    __tablename__ = "review_mark"
    __table_args__ = (UniqueConstraint("proposal_id", "anchor", "kind", "step", name="uq_review_mark"),)

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id")
    anchor: dt.datetime = utc_field()
    kind: str = Field(sa_type=String(16))
    step: int
    at: dt.datetime = utc_field()
    event_id: int | None = Field(default=None, foreign_key="event.id")


class ReviewCursor(SQLModel, table=True):
    """When a proposal next needs the review: the anchor it was last reviewed for and its next step's instant."""

    __tablename__ = "review_cursor"

    proposal_id: int = Field(primary_key=True, foreign_key="proposal.id")
    anchor: dt.datetime = utc_field()
    next_at: dt.datetime | None = utc_field(default=None)


_MARKS = ReviewMark.__table__  # type: ignore[attr-defined]
_CURSORS = ReviewCursor.__table__  # type: ignore[attr-defined]
_CURSOR_UPDATE = (
    _CURSORS.update()
    .where(_CURSORS.c.proposal_id == bindparam("c_id"))
    .values(anchor=bindparam("c_anchor"), next_at=bindparam("c_next_at"))
)

# The sweep selects by state and a time column; these make both selections index range scans.
Index("ix_proposal_state_deadline", col(Proposal.state), col(Proposal.deadline))
Index("ix_proposal_state_progress", col(Proposal.state), col(Proposal.last_progress_at))


@dataclass(frozen=True)
class Step:
    """One thing the review does for a proposal at an instant: remind, close the round, escalate, ask for progress."""

    kind: str
    step: int
    at: dt.datetime


@dataclass(frozen=True)
class Plan:
    """The review steps of one proposal's current anchor, in time order, and the deadline they refer to."""

    anchor: dt.datetime
    deadline: dt.datetime
    steps: tuple[Step, ...]


@dataclass
class ReviewReport:
    """What a review did: proposals examined and events written by kind."""

    proposals: int = 0
    reminders: int = 0
    escalations: int = 0
    closed: int = 0
    handovers: int = 0
    progress_due: int = 0
    skipped: int = 0

    def __iadd__(self, other: ReviewReport) -> ReviewReport:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @property
    def events(self) -> int:
        """Events written."""
        return self.reminders + self.escalations + self.closed + self.handovers + self.progress_due

    def as_dict(self) -> dict[str, int]:
        """Counts as a plain dictionary."""
        return asdict(self)


def plan(workflow: Workflow, proposal: Proposal) -> Plan | None:
    """The review steps of ``proposal`` in its current state, or None when the state has none."""
    prog = workflow.progress
    if proposal.state == prog.state:
        anchor = proposal.last_progress_at or proposal.state_entered_at
        due = anchor + dt.timedelta(days=prog.cadence_days)
        steps = [Step(PROGRESS_DUE, 0, due - dt.timedelta(days=prog.reminder_days))]
        steps += [Step(ESCALATE, i, due + dt.timedelta(days=e.after_days)) for i, e in enumerate(workflow.escalation, 1)]
        return Plan(anchor, due, tuple(sorted(steps, key=lambda s: s.at)))
    if proposal.deadline is None:
        return None
    deadline = proposal.deadline
    steps = [Step(REMIND, offset, deadline - dt.timedelta(days=offset)) for offset in workflow.state(proposal.state).reminders]
    if proposal.state == workflow.endorsement.state:
        # The round ends at its deadline (silence procedure): there is nothing to escalate.
        steps.append(Step(SILENCE, 0, deadline))
    else:
        steps += [Step(ESCALATE, i, deadline + dt.timedelta(days=e.after_days)) for i, e in enumerate(workflow.escalation, 1)]
    return Plan(proposal.state_entered_at, deadline, tuple(sorted(steps, key=lambda s: s.at)))


def _due_statement(lifecycle: Lifecycle) -> CompoundSelect[Any]:
    """One UNION selecting every due proposal id; built once per lifecycle, run with ``_due_params``.

    Per state with a deadline: rows whose deadline is within the state's longest reminder offset, and
    which have no cursor yet, a cursor of an earlier stay, or a cursor whose next step has come. Per
    progress cycle the same on ``last_progress_at``. And proposals awaiting approval whose presiding
    region is not the one of the term in force.
    """
    cached = _DUE_STATEMENTS.get(lifecycle)
    if cached is not None:
        return cached
    wf = lifecycle.workflow
    p, c, t = Proposal.__table__, ReviewCursor.__table__, PresidingTerm.__table__  # type: ignore[attr-defined]
    now = bindparam("now", type_=UTCDateTime())
    joined = select(p.c.id).select_from(p.outerjoin(c, c.c.proposal_id == p.c.id))

    def stale_or_due(anchor: Any) -> Any:
        return or_(c.c.proposal_id.is_(None), c.c.anchor != anchor, c.c.next_at <= now)

    parts = [
        joined.where(
            p.c.state == state.name,
            p.c.deadline <= bindparam(f"horizon_{state.name}", type_=UTCDateTime()),
            stale_or_due(p.c.state_entered_at),
        )
        for state in _deadline_states(wf)
    ]
    parts.append(
        joined.where(
            p.c.state == wf.progress.state,
            p.c.last_progress_at <= bindparam("progress_from", type_=UTCDateTime()),
            stale_or_due(p.c.last_progress_at),
        )
    )
    day = bindparam("day", type_=Date())
    parts.append(
        select(p.c.id)
        .select_from(p.join(t, and_(t.c.start <= day, t.c.end >= day)))
        .where(
            p.c.state.in_(sorted(lifecycle.approval_states)),
            or_(p.c.presiding_region.is_(None), p.c.presiding_region != t.c.region),
        )
    )
    statement = union(*parts)
    _DUE_STATEMENTS[lifecycle] = statement
    return statement


def _deadline_states(wf: Workflow) -> list[StateDef]:
    return [s for s in wf.states if not s.final and s.sla_days is not None and s.name != wf.progress.state]


def _due_params(wf: Workflow, now: dt.datetime) -> dict[str, Any]:
    params: dict[str, Any] = {"now": now, "day": now.date()}
    for state in _deadline_states(wf):
        params[f"horizon_{state.name}"] = now + dt.timedelta(days=max(state.reminders, default=0))
    params["progress_from"] = now - dt.timedelta(days=wf.progress.cadence_days - wf.progress.reminder_days)
    return params


_DUE_STATEMENTS: weakref.WeakKeyDictionary[Lifecycle, CompoundSelect[Any]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class _Timing:
    """How ``_due_statement`` selects a proposal in one state: by which instant, and how far ahead of it."""

    instant: str  # the column compared with the horizon (deadline, last progress report)
    anchor: str  # the column a current cursor's anchor equals
    lead: dt.timedelta  # the proposal is selected once now + lead reaches the instant


def _timings(wf: Workflow) -> dict[str, _Timing]:
    """Per state the review selects proposals in by time, what ``_due_params`` puts in its horizon."""
    out = {s.name: _Timing("deadline", "state_entered_at", dt.timedelta(days=max(s.reminders, default=0)))
           for s in _deadline_states(wf)}
    out[wf.progress.state] = _Timing(
        "last_progress_at", "last_progress_at", -dt.timedelta(days=wf.progress.cadence_days - wf.progress.reminder_days)
    )
    return out


def _next_due_rows(lifecycle: Lifecycle, some: bool) -> Select[Any]:
    """Every proposal a sweep may select some day (``:ids`` only, when ``some``), with its cursor's anchor and next step."""
    built = _NEXT_DUE_STATEMENTS.setdefault(lifecycle, {})
    if some in built:
        return built[some]
    p, c = Proposal.__table__, ReviewCursor.__table__  # type: ignore[attr-defined]
    states = sorted(set(_timings(lifecycle.workflow)) | lifecycle.approval_states)
    statement = (
        sa_select(p.c.id, p.c.state, p.c.deadline, p.c.state_entered_at, p.c.last_progress_at, p.c.presiding_region,
                  c.c.proposal_id.label("cursor"), c.c.anchor, c.c.next_at)
        .select_from(p.outerjoin(c, c.c.proposal_id == p.c.id))
        .where(p.c.state.in_(states), *([p.c.id.in_(bindparam("ids", expanding=True))] if some else []))
    )
    built[some] = statement
    return statement


_NEXT_DUE_STATEMENTS: weakref.WeakKeyDictionary[Lifecycle, dict[bool, Select[Any]]] = weakref.WeakKeyDictionary()
_TIMINGS: weakref.WeakKeyDictionary[Lifecycle, dict[str, _Timing]] = weakref.WeakKeyDictionary()  # per workflow, once


def next_due_each(
    session: Session, lifecycle: Lifecycle, now: dt.datetime, ids: Collection[int] | None = None,
) -> dict[int, dt.datetime]:
    """Per proposal, the first instant from ``now`` on at which a sweep selects it (``due_ids``); ``now`` when it
    would already. Proposals never selected (no review steps left, or in a state without any) are left out.

    Exact as long as only the review writes from ``now`` on: an action on a proposal, or a new presiding term,
    calls for a new answer for the proposals it touched. ``ids``: only these proposals (else every one).
    The conditions are those of ``_due_statement``, per row: a proposal without a cursor for its current
    anchor is selected once ``now`` reaches its instant (deadline, last progress report) less the state's
    lead; one with a current cursor also needs its next step's instant; one awaiting approval is selected
    on any day whose presiding term is not its presiding region's.
    """
    now = utc(now)
    if ids is not None and not ids:
        return {}
    connection = session.connection()
    rows = connection.execute(_next_due_rows(lifecycle, ids is not None), {"ids": sorted(ids)} if ids is not None else {})
    timings = _TIMINGS.get(lifecycle)
    if timings is None:
        timings = _TIMINGS[lifecycle] = _timings(lifecycle.workflow)
    approval = lifecycle.approval_states
    terms: list[tuple[dt.date, dt.date, str]] | None = None
    out: dict[int, dt.datetime] = {}
    for r in rows:
        candidates: list[dt.datetime] = []
        timing = timings.get(r.state)
        instant = getattr(r, timing.instant) if timing is not None else None
        if timing is not None and instant is not None:
            first = instant - timing.lead
            if r.cursor is None or r.anchor != getattr(r, timing.anchor):
                candidates.append(first)
            elif r.next_at is not None:
                candidates.append(max(first, r.next_at))
        if r.state in approval:
            if terms is None:
                t = PresidingTerm.__table__  # type: ignore[attr-defined]
                terms = [(x.start, x.end, x.region) for x in connection.execute(sa_select(t.c.start, t.c.end, t.c.region))]
            handover = _handover_from(terms, r.presiding_region, now)
            candidates += [handover] if handover is not None else []
        if candidates:
            out[r.id] = max(now, min(candidates))
    return out


def _handover_from(terms: list[tuple[dt.date, dt.date, str]], region: str | None, now: dt.datetime) -> dt.datetime | None:
    """The first instant from ``now`` on at which a term in force is not ``region``'s; None: never."""
    day = now.date()
    while True:
        if any(r != region for start, end, r in terms if start <= day <= end):
            return max(now, dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC))
        # The terms in force change only on a term's first day or on the day after its last.
        later = [start for start, _, _ in terms if start > day] + [end + _DAY for _, end, _ in terms if end >= day]
        if not later:
            return None
        day = min(later)


_DAY = dt.timedelta(days=1)


def next_due(
    session: Session, lifecycle: Lifecycle, now: dt.datetime, ids: Collection[int] | None = None,
) -> dt.datetime | None:
    """The first instant from ``now`` on at which a sweep finds something due (``now``: already); None: never.

    The earliest of ``next_due_each``: a sweep at any instant before it selects nothing and does nothing at
    all, as long as only the review writes meanwhile. ``ids``: only for these proposals.
    """
    each = next_due_each(session, lifecycle, now, ids)
    return min(each.values()) if each else None


def due_ids(session: Session, lifecycle: Lifecycle, now: dt.datetime) -> list[int]:
    """Ids of the proposals that have a review step due at ``now`` or await a hand-over, ascending."""
    now = utc(now)
    rows = session.connection().execute(_due_statement(lifecycle), _due_params(lifecycle.workflow, now))
    return sorted(row[0] for row in rows)


def batches(ids: Sequence[int], size: int = DEFAULT_BATCH) -> list[list[int]]:
    """Split ids into lists of at most ``size``."""
    if size < 1:
        raise ValueError("batch size must be positive")
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def _escalation_targets(roster: Roster, target: str, proposal: Proposal) -> list[str]:
    """Who an escalation step addressed to ``target`` reaches for ``proposal``.

    A chair or presiding head who wrote the proposal is replaced by their deputy, who holds their steps.
    """
    if target == "group_chair":
        chair = roster.acting_chair(proposal.group, proposal.author)
        return [chair] if chair else []
    if target == "presiding_head":
        return sorted(roster.acting_presiding_heads(proposal.author))
    return sorted(roster.secretariat)


# What a batch reads, for the proposals :ids. The texts of the proposals are not needed: not loading them
# keeps big batches light.
_BATCH_PROPOSALS = (
    sa_select(Proposal, token_column())  # and the definition generation's token, for the roster
    .options(*(defer(getattr(Proposal, name)) for name in ("title", "summary", "body")))
    .where(col(Proposal.id).in_(bindparam("ids", expanding=True)))
    .order_by(col(Proposal.id))
)
_BATCH_MARKS = sa_select(_MARKS.c.proposal_id, _MARKS.c.anchor, _MARKS.c.kind, _MARKS.c.step).where(
    _MARKS.c.proposal_id.in_(bindparam("ids", expanding=True))
)
_BATCH_CURSORS = sa_select(_CURSORS.c.proposal_id, _CURSORS.c.anchor, _CURSORS.c.next_at).where(
    _CURSORS.c.proposal_id.in_(bindparam("ids", expanding=True))
)


class _Batch:
    """The review of one batch of proposals inside one transaction."""

    def __init__(self, session: Session, lifecycle: Lifecycle, ids: Sequence[int], now: dt.datetime) -> None:
        self.session, self.lifecycle, self.now = session, lifecycle, now
        self.wf = lifecycle.workflow
        self.report = ReviewReport()
        chosen = {"ids": list(ids)}
        found = session.execute(_BATCH_PROPOSALS, chosen).all()
        self.proposals: list[Proposal] = [row[0] for row in found]
        # Marks and cursors are read and written as plain rows (Core): thousands per batch, no ORM objects needed.
        connection = session.connection()
        self.marks: set[tuple[int, dt.datetime, str, int]] = {
            (r.proposal_id, r.anchor, r.kind, r.step) for r in connection.execute(_BATCH_MARKS, chosen)
        }
        self.cursors: dict[int, tuple[dt.datetime, dt.datetime | None]] = {
            r.proposal_id: (r.anchor, r.next_at) for r in connection.execute(_BATCH_CURSORS, chosen)
        }
        self.cursor_inserts: list[dict[str, Any]] = []
        self.cursor_updates: list[dict[str, Any]] = []
        # Who is who is read only when a step needs it: most batches need one or two parts of it.
        self.roster = Roster(session, now, people(session, found[0][1], known=True) if found else None)
        self._must_act: dict[int, list[str]] = {}
        self.new_marks: list[dict[str, Any]] = []
        # Notices are written together at the end (one UPDATE per proposal, one INSERT for all events);
        # each waits with the mark that records it, which gets the event's id.
        self.queue: list[tuple[Notice, dict[str, Any] | None]] = []
        self.closing: list[Proposal] = []  # rounds past their deadline, closed together after the notices

    def must_act(self, pid: int) -> list[str]:
        """Who must still act on proposal ``pid`` (read in ``run`` for the proposals a reminder is due for)."""
        return self._must_act.get(pid, [])

    def run(self) -> ReviewReport:
        work = [(p, self._due(p)) for p in self.proposals]
        asking = [p for p, due in work if due is not None and any(s.kind in (REMIND, PROGRESS_DUE) for s in due[2])]
        if asking:
            self._must_act = self.lifecycle.must_act_many(self.session, asking, self.now, roster=self.roster)
        for proposal, due in work:
            self.report.proposals += 1
            self._handover(proposal)
            if due is not None:
                self._steps(proposal, *due)
        self._write_notices()
        self._close_rounds()
        connection = self.session.connection()
        if self.new_marks:
            connection.execute(insert(_MARKS), self.new_marks)
        if self.cursor_inserts:
            connection.execute(insert(_CURSORS), self.cursor_inserts)
        if self.cursor_updates:
            connection.execute(_CURSOR_UPDATE, self.cursor_updates)
        return self.report

    def _write_notices(self) -> None:
        if not self.queue:
            return
        ids = self.lifecycle.notice_many(self.session, [n for n, _ in self.queue], now=self.now)
        for (_, mark), event_id in zip(self.queue, ids, strict=True):
            if mark is not None:
                mark["event_id"] = event_id
                self.new_marks.append(mark)
        self.queue.clear()

    def _handover(self, p: Proposal) -> None:
        if p.state not in self.lifecycle.approval_states:
            return
        new = self.roster.presiding_region
        if new is None or p.presiding_region == new:
            return
        old = p.presiding_region
        # Those who now hold the approval: the new region's heads, or its deputy for a proposal its head wrote.
        payload = {"from_region": old, "to_region": new, "recipients": sorted(self.roster.acting_presiding_heads(p.author))}
        self.queue.append((Notice(p, HANDOVER, payload, {"presiding_region": new}), None))
        self.report.handovers += 1
        log.info("proposal %s: handed over from %s to %s", p.id, old, new)

    def _due(self, p: Proposal) -> tuple[Plan, list[Step], list[Step]] | None:
        """The plan of ``p``, its steps not taken yet, and those of them that are due."""
        todo = plan(self.wf, p)
        if todo is None:
            return None
        pid = _pid(p)
        pending = [s for s in todo.steps if (pid, todo.anchor, s.kind, s.step) not in self.marks]
        return todo, pending, [s for s in pending if s.at <= self.now]

    def _steps(self, p: Proposal, todo: Plan, pending: list[Step], due: list[Step]) -> None:
        pid = _pid(p)
        for i, step in enumerate(due):
            if step.kind == SILENCE:
                self.closing.append(p)  # the next state's steps belong to its own anchor: no cursor now
                return
            overtaken = any(later.at > step.at for later in due[i + 1 :])
            if step.kind in (REMIND, PROGRESS_DUE) and overtaken:
                self._mark(pid, todo.anchor, step, None)
                self.report.skipped += 1
                continue
            self._issue(p, todo, step)
        later = [s.at for s in pending if s.at > self.now]
        self._cursor(pid, todo.anchor, min(later) if later else None)

    def _issue(self, p: Proposal, todo: Plan, step: Step) -> None:
        pid = _pid(p)
        payload: dict[str, Any]
        if step.kind == ESCALATE:
            target = self.wf.escalation[step.step - 1].to
            recipients = _escalation_targets(self.roster, target, p)
            payload = {"level": step.step, "recipients": recipients, "deadline": todo.deadline.isoformat()}
        elif step.kind == REMIND:
            recipients = self.must_act(pid)
            payload = {"recipients": recipients, "offset_days": step.step, "deadline": todo.deadline.isoformat()}
        else:
            recipients = self.must_act(pid)
            payload = {"recipients": recipients, "due": todo.deadline.isoformat()}
        if not recipients:
            log.warning("proposal %s: nobody to receive %s %s; step recorded as skipped", p.id, step.kind, step.step)
            self._mark(pid, todo.anchor, step, None)
            self.report.skipped += 1
            return
        self.queue.append((Notice(p, step.kind, payload), self._mark_row(pid, todo.anchor, step, None)))
        self.marks.add((pid, todo.anchor, step.kind, step.step))
        if step.kind == ESCALATE:
            self.report.escalations += 1
        elif step.kind == REMIND:
            self.report.reminders += 1
        else:
            self.report.progress_due += 1
        log.debug("proposal %s: %s %s to %s", p.id, step.kind, step.step, ", ".join(recipients))

    def _close_rounds(self) -> None:
        if not self.closing:
            return
        closed = self.lifecycle.close_rounds(self.session, self.closing, now=self.now)
        self.report.closed += len(closed)
        for p in self.closing:
            if p.id in closed:
                log.info("proposal %s: round %s closed under the silence procedure", p.id, p.round)
            else:
                # Left open (an objection recorded outside the lifecycle): a person decides; no retry every hour.
                self._cursor(_pid(p), p.state_entered_at, None)

    def _mark(self, proposal_id: int, anchor: dt.datetime, step: Step, event_id: int | None) -> None:
        self.marks.add((proposal_id, anchor, step.kind, step.step))
        self.new_marks.append(self._mark_row(proposal_id, anchor, step, event_id))

    def _mark_row(self, proposal_id: int, anchor: dt.datetime, step: Step, event_id: int | None) -> dict[str, Any]:
        return {
            "proposal_id": proposal_id, "anchor": anchor, "kind": step.kind, "step": step.step,
            "at": self.now, "event_id": event_id,
        }

    def _cursor(self, proposal_id: int, anchor: dt.datetime, next_at: dt.datetime | None) -> None:
        known = self.cursors.get(proposal_id)
        if known is None:
            self.cursor_inserts.append({"proposal_id": proposal_id, "anchor": anchor, "next_at": next_at})
        elif known != (anchor, next_at):
            self.cursor_updates.append({"c_id": proposal_id, "c_anchor": anchor, "c_next_at": next_at})
        self.cursors[proposal_id] = (anchor, next_at)


def _pid(p: Proposal) -> int:
    if p.id is None:
        raise ValueError("a proposal under review has no id")
    return p.id


def review_batch(session: Session, lifecycle: Lifecycle, ids: Sequence[int], now: dt.datetime) -> ReviewReport:
    """Review the proposals ``ids`` at ``now`` in the caller's transaction (flushed, not committed)."""
    if not ids:
        return ReviewReport()
    return _Batch(session, lifecycle, ids, utc(now)).run()


def review_ids(engine: Engine, lifecycle: Lifecycle, ids: Sequence[int], now: dt.datetime) -> ReviewReport:
    """Review one batch in its own transaction; a concurrent change rolls it back and it is read again."""
    attempt = 1
    while True:
        try:
            with session_scope(engine) as session:
                return review_batch(session, lifecycle, ids, now)
        except (ConflictError, IntegrityError, OperationalError) as exc:
            # A concurrent action or sweep got there first (on SQLite: a stale snapshot). Read again.
            if attempt >= ATTEMPTS:
                raise
            attempt += 1
            log.warning("review batch of %d proposals met a concurrent change (%s); reading it again", len(ids), exc)


def check_review_time(engine: Engine, now: dt.datetime) -> dt.datetime:
    """``now`` in UTC; InvalidInputError when it lies before the newest recorded event (a back-dated hand-over, ...)."""
    return check_run_time(engine, now, run="review")


_NEWEST_EVENT = sa_select(func.max(Event.__table__.c.at))  # type: ignore[attr-defined]


def select_due(engine: Engine, lifecycle: Lifecycle, now: dt.datetime, batch_size: int = DEFAULT_BATCH) -> list[list[int]]:
    """The due proposal ids at ``now``, in batches (a read-only transaction); refuses a ``now`` before the newest event."""
    now = utc(now)
    with Session(engine) as session:
        newest = session.connection().execute(_NEWEST_EVENT).scalar()  # as newest_event_at, in the selection's transaction
        if newest is not None and now < newest:
            check_review_time(engine, now)  # refuses, with its message
        return batches(due_ids(session, lifecycle, now), batch_size)


def sweep(engine: Engine, lifecycle: Lifecycle, now: dt.datetime, *, batch_size: int = DEFAULT_BATCH) -> ReviewReport:
    """The whole review at ``now``: select what is due and review it batch by batch, each in its own transaction."""
    report = ReviewReport()
    for ids in select_due(engine, lifecycle, now, batch_size):
        report += review_ids(engine, lifecycle, ids, now)
    if report.events or report.skipped:
        log.info("review at %s: %s", utc(now).isoformat(), report.as_dict())
    return report


def sweep_in(session: Session, lifecycle: Lifecycle, now: dt.datetime, *, batch_size: int = DEFAULT_BATCH) -> ReviewReport:
    """The whole review at ``now`` in the caller's transaction (flushed, not committed), batch by batch.

    For a caller that is its database's only writer and whose clock only moves on (``forumflow simulate``): no
    retry, and no check of ``now`` against the newest event. Decides as ``sweep`` does.
    """
    now = utc(now)
    report = ReviewReport()
    for ids in batches(due_ids(session, lifecycle, now), batch_size):
        report += review_batch(session, lifecycle, ids, now)
    if report.events or report.skipped:
        log.info("review at %s: %s", now.isoformat(), report.as_dict())
    return report


def marks_of(session: Session, proposal_id: int) -> Iterator[ReviewMark]:
    """The review steps taken for a proposal, in order."""
    yield from session.exec(select(ReviewMark).where(ReviewMark.proposal_id == proposal_id).order_by(col(ReviewMark.id)))
