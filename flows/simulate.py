"""``forumflow simulate``: a forum's activity in simulated time, then the review's invariants, checked.

Proposals are drafted by working-group members and moved by the people the workflow names: the chair
reviews, heads of region endorse or object for their own state, the head of the presiding region of the
day approves, authors report progress. Delays are random (seeded): some chairs are late, some rounds close
by silence, some implementations miss their progress reports. Every simulated hour the review sweep runs,
then dispatch plans deliveries and sends them. The plain functions are called directly (a Prefect run per
simulated hour would dominate the wall time); the decisions are the same ones the ``review`` flow runs.

A sweep in an hour before anything is due would select nothing and write nothing, so it is skipped: the
simulation keeps, per proposal, the first instant the review selects it (``models.review.next_due_each``),
and asks again for the proposals an action or a sweep has just changed. ``SimulationConfig.every_hour``
sweeps every hour instead (the reference, which gives the same database). The run tells where its time
went (``Timings``).

The simulation's database is a scratch database (``make_engine(..., scratch=True)``: not synced to disk) that
it alone writes, so each simulated day is one transaction: the actions (each in a savepoint, so that a refused
one leaves nothing behind, as when it had a transaction of its own), sweeps and planning of its hours, each
seeing what the one before wrote. With mail, an hour that sends commits first (the sender reads the outbox on
connections of its own).

The invariants are then checked from the event log, the outbox and the Maildir:
reminders exactly once, on time and never to someone who had already acted; every overdue item escalated
at each level; every round closed at its deadline; every presiding-term change handed over on its date;
replay reproducing every proposal's state; every event planned right after its hour.
"""

from __future__ import annotations

import bisect
import datetime as dt
import email.parser
import heapq
import itertools
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from config.definition import ForumDefinition
from config.settings import Settings
from models.db import session_scope
from models.errors import ForumflowError
from models.lifecycle import SYSTEM, Lifecycle
from models.review import DEFAULT_BATCH, ReviewReport, next_due_each, sweep_in
from models.tables import Event, Proposal, ProposalCreate

log = logging.getLogger(__name__)

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
# Starts half a year before RU-CHE's term ends, so a default year includes the hand-over to UZ-SA.
DEFAULT_START = dt.datetime(2022, 7, 1, tzinfo=dt.UTC)

TITLES = (
    "Joint agro-industrial park", "Cold-chain logistics corridor", "Seed testing laboratory network",
    "Single window for cross-border e-commerce", "Trade mission calendar", "Investment guarantee pilot",
    "Regional innovation vouchers", "Joint research grants", "Technology transfer office network",
    "Student exchange programme", "Travelling manuscript exhibition", "Summer school in Samarkand",
    "Heritage tour circuit", "Medical volunteer exchange", "Disaster response drills",
)


@dataclass(frozen=True)
class SimulationConfig:
    """How much to simulate: proposals, days from ``start``, the random seed."""

    proposals: int = 200
    days: int = 365
    seed: int = 1
    start: dt.datetime = DEFAULT_START
    batch_size: int = DEFAULT_BATCH
    # Sweep every hour, even those before the next instant anything can be due (which find nothing to do):
    # the reference that skipping them is tested against.
    every_hour: bool = False


@dataclass
class Check:
    """One invariant: did it hold, over how many cases, and the first failures."""

    name: str
    checked: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No failure."""
        return not self.failures

    def expect(self, condition: bool, failure: str) -> None:
        """Count a case; remember it when it fails."""
        self.checked += 1
        if not condition:
            self.failures.append(failure)


@dataclass
class Timings:
    """Where the wall time of a simulation went, in seconds; the parts add up to the whole.

    ``actions``: people's actions (``create_proposal``, ``Lifecycle.apply``, each in its savepoint);
    ``sweeps``: the review (``sweep_in``), reading back the rounds it closed, and working out when it next has
    work (``next_due_each``); ``planning``: turning events into outbox rows; ``sending``: sending into the
    mail sink (``--mail`` only); ``checks``: the invariants; ``other``: the rest (database set-up, committing
    each simulated day, scheduling the simulated people, the hourly loop, counting the final states).
    """

    actions: float = 0.0
    sweeps: float = 0.0
    planning: float = 0.0
    sending: float = 0.0
    checks: float = 0.0
    other: float = 0.0

    PARTS: ClassVar[tuple[str, ...]] = ("actions", "sweeps", "planning", "sending", "checks", "other")

    def settle(self, total: float) -> None:
        """Set ``other`` to what the measured parts leave of ``total``."""
        self.other = max(0.0, total - sum(getattr(self, part) for part in self.PARTS[:-1]))

    def as_dict(self) -> dict[str, float]:
        """Seconds per part, rounded to the millisecond."""
        return {part: round(getattr(self, part), 3) for part in self.PARTS}


@dataclass
class SimulationResult:
    """What happened and whether the invariants held."""

    config: SimulationConfig
    seconds: float = 0.0
    timings: Timings = field(default_factory=Timings)
    actions: int = 0
    refused: list[str] = field(default_factory=list)
    sweeps: int = 0  # hours reviewed (every simulated hour)
    sweeps_run: int = 0  # of them, those a sweep ran for (the others had provably nothing due)
    review: ReviewReport = field(default_factory=ReviewReport)
    planned: int = 0
    sent: int = 0
    states: Counter[str] = field(default_factory=Counter)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every invariant held and no simulated action was refused."""
        return not self.refused and all(c.ok for c in self.checks)


# The actions people take in the simulation (those of the default workflow; the rest comes from the definition).
PLAYED = frozenset({"submit", "withdraw", "recommend", "return", "reject", "approve", "refer_back", "complete"})

# Plans the deliveries of the events not planned yet, in the simulation's session at ``now``; returns how many it planned.
Planner = Callable[[Session, dt.datetime], int]
# Sends what is due at ``now`` into the mail sink, after a commit; returns (sent, deliveries still to retry).
Sender = Callable[[dt.datetime], tuple[int, int]]


@dataclass
class _Mirror:
    """What the simulation knows about a proposal between actions."""

    pid: int
    group: str
    author: str
    chair: str
    state: str
    entered: dt.datetime
    percent: int = 0


@dataclass(order=True)
class _Item:
    at: dt.datetime
    seq: int
    pid: int = field(compare=False)
    entered: dt.datetime | None = field(compare=False)
    action: str = field(compare=False)
    actor: str = field(compare=False)


class _Forum:
    """Who is who, from the definition (the simulation picks the right actors without asking the database)."""

    def __init__(self, definition: ForumDefinition) -> None:
        self.definition = definition
        self.heads: dict[str, list[str]] = defaultdict(list)  # by country
        self.head_of_region: dict[str, str] = {}
        for m in definition.members:
            if "head_of_region" in m.roles and m.region:
                self.heads[m.region.split("-")[0]].append(m.handle)
                self.head_of_region.setdefault(m.region, m.handle)
        self.groups = {g.key: g for g in definition.working_groups}

    def presiding_head(self, at: dt.datetime) -> str | None:
        term = self.definition.presiding_term(at.date())
        return self.head_of_region.get(term.region) if term else None


class Simulator:
    """Drives proposals through the lifecycle in simulated time and runs the review every hour."""

    def __init__(
        self, engine: Engine, lifecycle: Lifecycle, config: SimulationConfig, *,
        planner: Planner | None = None, sender: Sender | None = None,
    ) -> None:
        self.engine, self.lifecycle, self.config = engine, lifecycle, config
        self.wf = lifecycle.workflow
        missing = sorted(PLAYED - set(lifecycle.actions)) + sorted({"in_review"} - set(self.wf.state_names))
        if missing:
            raise ForumflowError(f"simulate plays the default workflow; this forum's workflow lacks {', '.join(missing)}")
        self.forum = _Forum(lifecycle.definition)
        self.rng = random.Random(config.seed)  # noqa: S311 - a reproducible simulation, not secrets
        self.planner, self.sender = planner, sender
        self.connection: Connection | None = None  # open for the whole run; in a transaction from the first work to a commit
        self.session: Session | None = None  # the transaction's session
        self.agenda: list[_Item] = []
        self.seq = itertools.count()
        self.mirrors: dict[int, _Mirror] = {}
        self.rounds: list[tuple[dt.datetime, int]] = []  # (deadline, pid) of open rounds, for the silence procedure
        self.touched: set[int] = set()  # proposals written by actions this hour
        # When the review next selects each proposal (``next_due_each``): sweeps before the earliest find nothing.
        self.due: dict[int, dt.datetime] = {}
        self.due_heap: list[tuple[dt.datetime, int]] = []  # (instant, pid), current when it matches ``due``
        self.result = SimulationResult(config)

    # ------------------------------------------------------------------ scheduling
    def _days(self, mean: float) -> dt.timedelta:
        return dt.timedelta(days=self.rng.expovariate(1.0 / mean))

    def _at(self, at: dt.datetime, pid: int | None, action: str, actor: str, entered: dt.datetime | None) -> None:
        heapq.heappush(self.agenda, _Item(at, next(self.seq), pid or 0, entered, action, actor))

    def _plan_creations(self) -> None:
        span = self.config.days * 0.75 * 86400
        groups = list(self.forum.groups.values())
        for _ in range(self.config.proposals):
            group = self.rng.choice(groups)
            author = self.rng.choice([m for m in group.members if m != group.chair])
            at = self.config.start + dt.timedelta(seconds=self.rng.uniform(0, span))
            self._at(at, None, "create", author, None)

    def _entered(self, m: _Mirror, state: str, at: dt.datetime) -> None:
        """Schedule what people do in the state ``m`` just entered."""
        m.state, m.entered = state, at
        r, wf = self.rng, self.wf
        if state == wf.initial:
            if r.random() < 0.05:
                self._at(at + self._days(10), m.pid, "withdraw", m.author, at)
            else:
                self._at(at + self._days(3), m.pid, "submit", m.author, at)
        elif state == "in_review":
            if r.random() < 0.03:
                self._at(at + self._days(10), m.pid, "withdraw", m.author, at)
                return
            action = r.choices(["recommend", "return", "reject"], weights=[80, 13, 7])[0]
            self._at(at + self._days(16), m.pid, action, m.chair, at)
        elif state == wf.endorsement.state:
            deadline = at + dt.timedelta(days=wf.state(state).sla_days or 0)
            bisect.insort(self.rounds, (deadline, m.pid))
            for heads in self.forum.heads.values():
                if r.random() < 0.9:
                    when = at + self._days(6)
                    if when < deadline:  # a head who would answer after the deadline stays silent
                        action = wf.endorsement.object if r.random() < 0.02 else wf.endorsement.endorse
                        self._at(when, m.pid, action, r.choice(heads), at)
        elif state in self.lifecycle.approval_states:
            action = "approve" if r.random() < 0.93 else "refer_back"
            self._at(at + self._days(8), m.pid, action, "", at)  # the presiding head of the day decides
        elif state == wf.progress.state:
            self._next_report(m, at)

    def _next_report(self, m: _Mirror, at: dt.datetime) -> None:
        actor = self.rng.choice([m.author, m.chair])
        if m.percent >= 100:
            self._at(at + self._days(10), m.pid, "complete", actor, m.entered)
        else:
            self._at(at + self._days(70), m.pid, self.wf.progress.action, actor, m.entered)

    # ------------------------------------------------------------------ the transaction (a simulated day)
    @contextmanager
    def _work(self, *, savepoint: bool = False) -> Iterator[Session]:
        """The transaction's session (the transaction begun on first use); with ``savepoint``, undone alone on error.

        Each piece of work finds the session empty (as a session of its own would be) and leaves what it wrote
        flushed. Without a savepoint an error ends the run, and what was not committed is rolled back.
        """
        session = self.session
        if session is None:
            if self.connection is None:
                self.connection = self.engine.connect()
            self.connection.begin()
            session = Session(bind=self.connection, expire_on_commit=False, join_transaction_mode="rollback_only")
            self.session = session
        # The savepoint is the driver's: SQLAlchemy's (``begin_nested``) costs as much as the action's own statements.
        # Undoing it is enough here, since only a refusal is caught (an error of the session itself ends the run).
        raw = self.connection.connection.driver_connection if savepoint and self.connection is not None else None
        if raw is not None:
            raw.execute("SAVEPOINT simulated_action")
        try:
            yield session
            session.flush()
        except BaseException:
            if raw is not None:
                raw.execute("ROLLBACK TO simulated_action")
            raise
        finally:
            if raw is not None:
                raw.execute("RELEASE simulated_action")
            session.expunge_all()

    def _commit(self) -> None:
        """Commit the transaction, if there is one."""
        if self.session is not None and self.connection is not None:
            self.session.close()  # leaves the connection's transaction alone (rollback_only)
            self.session = None
            self.connection.commit()

    def _close(self) -> None:
        """Roll back what was not committed (after an error) and give the connection back."""
        if self.session is not None:
            self.session.close()
            self.session = None
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    # ------------------------------------------------------------------ acting
    def _create(self, item: _Item) -> None:
        group = next(g for g in self.forum.groups.values() if item.actor in g.members and item.actor != g.chair)
        title = f"{self.rng.choice(TITLES)} #{len(self.mirrors) + 1}"
        with self._work(savepoint=True) as s:
            p = self.lifecycle.create_proposal(
                session=s, proposal_in=ProposalCreate(group=group.key, author=item.actor, title=title), now=item.at
            )
            pid = p.id or 0
        m = _Mirror(pid, group.key, item.actor, group.chair, self.wf.initial, item.at)
        self.mirrors[pid] = m
        self.touched.add(pid)
        self._entered(m, self.wf.initial, item.at)

    def _act(self, item: _Item) -> None:
        m = self.mirrors[item.pid]
        if m.entered != item.entered:
            return  # the proposal moved on since this was planned
        actor = item.actor or self.forum.presiding_head(item.at) or ""
        percent: int | None = None
        if item.action == self.wf.progress.action:
            percent = min(100, m.percent + self.rng.randint(20, 45))
        comment = "" if item.action in ("submit", "recommend", "endorse", "approve", "complete") else "See the attached note."
        try:
            with self._work(savepoint=True) as s:
                events = self.lifecycle.apply(s, m.pid, item.action, actor, comment=comment, percent=percent, now=item.at)
        except ForumflowError as exc:
            self.result.refused.append(f"{item.at:%Y-%m-%d %H:%M} proposal {m.pid}: {item.action} by {actor}: {exc}")
            return
        self.result.actions += 1
        self.touched.add(m.pid)
        new_state = events[-1].to_state
        if item.action == self.wf.progress.action:
            m.percent = percent or m.percent
            self._next_report(m, item.at)
        elif new_state != m.state:
            self._entered(m, new_state, item.at)

    def _after_sweep(self, now: dt.datetime) -> None:
        """Rounds past their deadline were closed by the sweep: their proposals now await approval."""
        due = [pid for deadline, pid in self.rounds if deadline <= now]
        if not due:
            return
        self.rounds = [(d, pid) for d, pid in self.rounds if d > now]
        with self._work() as s:
            rows = s.exec(select(Proposal.id, Proposal.state, Proposal.state_entered_at).where(col(Proposal.id).in_(due))).all()
        for pid, state, entered in rows:
            m = self.mirrors[pid or 0]
            if state != m.state or entered != m.entered:
                self._entered(m, state, entered)

    # ------------------------------------------------------------------ the run
    def run(self) -> SimulationResult:
        """Simulate, hour by hour; then check the invariants."""
        began = time.perf_counter()
        self._plan_creations()
        end = self.config.start + dt.timedelta(days=self.config.days)
        now = self.config.start
        retrying = 0
        try:
            while now < end:
                now += HOUR
                retrying = self._hour(now, retrying)
            for _ in range(3):
                self._plan(end)
                self._commit()
                if not self._send(end):
                    break
            with self._work() as s:
                self.result.states = Counter(s.exec(select(Proposal.state)).all())
            self._commit()
        finally:
            self._close()
        self.result.seconds = time.perf_counter() - began
        self.result.timings.settle(self.result.seconds)
        return self.result

    def _hour(self, now: dt.datetime, retrying: int) -> int:
        """The hour ending at ``now``: the actions due, the sweep (when it has work), planning, sending (mail only).

        ``retrying``: deliveries left to retry by the hour before; returns those left by this one.
        """
        clock, timings = time.perf_counter, self.result.timings
        self.touched.clear()
        if self.agenda and self.agenda[0].at <= now:
            t0 = clock()
            while self.agenda and self.agenda[0].at <= now:
                item = heapq.heappop(self.agenda)
                if item.action == "create":
                    self._create(item)
                else:
                    self._act(item)
            timings.actions += clock() - t0
        acted = bool(self.touched)
        report = ReviewReport()
        self.result.sweeps += 1
        t0 = clock()
        if self.config.every_hour or self._review_due(now):
            with self._work() as s:
                report = sweep_in(s, self.lifecycle, now, batch_size=self.config.batch_size)
            self.result.review += report
            self.result.sweeps_run += 1
            if report.closed:
                self._after_sweep(now)
            if not self.config.every_hour:
                self._reviewed(now)
        timings.sweeps += clock() - t0
        # Plan after the sweep whenever there is something to plan: an hour in which nothing was written (no
        # proposal acted on, nothing reviewed) plans nothing. Send (after a commit) when there is anything new
        # or anything left to retry. Else commit once a simulated day.
        if acted or report.events:
            self._plan(now)
        sending = self.sender is not None and bool(acted or report.events or retrying)
        if sending or (now - self.config.start) % DAY == dt.timedelta(0):
            self._commit()
        if sending:
            retrying = self._send(now)
        return retrying

    # ------------------------------------------------------------------ when the review has work
    def _review_due(self, now: dt.datetime) -> bool:
        """Does the sweep at ``now`` find anything due? Learns first when the proposals acted on need the review."""
        if self.touched and not self._due_by(now):
            self._learn_due(now, self.touched)
            self.touched.clear()
        return self._due_by(now)

    def _reviewed(self, now: dt.datetime) -> None:
        """After the sweep at ``now``: when the proposals it reviewed (and those acted on) need the review next."""
        reviewed = set(self.touched)
        while self.due_heap and self.due_heap[0][0] <= now:
            at, pid = heapq.heappop(self.due_heap)
            if self.due.get(pid) == at:
                reviewed.add(pid)
        self._learn_due(now, reviewed)

    def _learn_due(self, now: dt.datetime, pids: set[int]) -> None:
        """Read when the review next selects each of ``pids`` (none of them, for those it never will)."""
        if not pids:
            return
        with self._work() as s:
            each = next_due_each(s, self.lifecycle, now, pids)
        for pid in pids:
            at = each.get(pid)
            if at is None:
                self.due.pop(pid, None)
            elif self.due.get(pid) != at:
                self.due[pid] = at
                heapq.heappush(self.due_heap, (at, pid))

    def _due_by(self, now: dt.datetime) -> bool:
        """Is a proposal due at ``now`` or before, by what is known (entries no longer current are dropped)?"""
        heap = self.due_heap
        while heap and self.due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return bool(heap) and heap[0][0] <= now

    def _plan(self, now: dt.datetime) -> None:
        """Plan the deliveries of the hour ending at ``now``, in the transaction."""
        if self.planner is None:
            return
        t0 = time.perf_counter()
        with self._work() as s:
            self.result.planned += self.planner(s, now)
        self.result.timings.planning += time.perf_counter() - t0

    def _send(self, now: dt.datetime) -> int:
        """Send what is due at ``now`` (after a commit); returns the deliveries still to retry."""
        if self.sender is None:
            return 0
        t0 = time.perf_counter()
        sent, retrying = self.sender(now)
        self.result.sent += sent
        self.result.timings.sending += time.perf_counter() - t0
        return retrying


def _grid(start: dt.datetime, t: dt.datetime) -> dt.datetime:
    """The first whole simulated hour at or after ``t`` (hours counted from ``start``)."""
    hours = -(-(t - start) // HOUR)
    return start + max(hours, 0) * HOUR


# ---------------------------------------------------------------------- invariants
@dataclass
class _Entry:
    """A stay of a proposal in one state: from ``start`` until ``end`` (None: still there at the end)."""

    pid: int
    state: str
    start: dt.datetime
    end: dt.datetime | None
    round: int = 0
    actors: list[tuple[dt.datetime, str, str]] = field(default_factory=list)  # (at, actor, action)
    anchors: list[dt.datetime] = field(default_factory=list)  # progress anchors: entry and each report


class Checker:
    """Checks the invariants of a finished simulation from the database (and the Maildir when given)."""

    def __init__(self, engine: Engine, lifecycle: Lifecycle, config: SimulationConfig, *, maildir: Path | None = None) -> None:
        self.engine, self.lifecycle, self.config, self.maildir = engine, lifecycle, config, maildir
        self.wf = lifecycle.workflow
        self.start = config.start
        self.end = config.start + dt.timedelta(days=config.days)
        self.heads_country = {
            m.handle: m.region.split("-")[0] for m in lifecycle.definition.members if "head_of_region" in m.roles and m.region
        }

    def grid(self, t: dt.datetime) -> dt.datetime:
        """The first sweep at or after ``t`` (sweeps run every hour from the start)."""
        return _grid(self.start, t)

    def _active_at_sweep(self, entry: _Entry, t: dt.datetime) -> bool:
        """Was the proposal still in this stay when the sweep for instant ``t`` ran (inside the simulated span)?"""
        g = self.grid(t)
        return g > entry.start and g <= self.end and (entry.end is None or entry.end > g)

    def run(self) -> list[Check]:
        """Every invariant."""
        with session_scope(self.engine) as s:
            events = list(s.exec(select(Event).order_by(col(Event.proposal_id), col(Event.seq))))
            rows = {p.id: (p.state, p.text_version) for p in s.exec(select(Proposal))}
        by_pid: dict[int, list[Event]] = defaultdict(list)
        for e in events:
            by_pid[e.proposal_id].append(e)
        entries = {pid: self._entries(pid, evs) for pid, evs in by_pid.items()}
        checks = [
            self._replay(by_pid, rows),
            *self._reminders(by_pid, entries),
            self._escalations(by_pid, entries),
            self._rounds(by_pid, entries),
            self._handovers(by_pid, entries),
        ]
        return checks

    def _entries(self, pid: int, events: list[Event]) -> list[_Entry]:
        out: list[_Entry] = []
        for e in events:
            if e.from_state != e.to_state or e.action == "create":
                if out:
                    out[-1].end = e.at
                out.append(_Entry(pid, e.to_state, e.at, None, round=int(e.payload.get("round", 0) or 0)))
                if e.to_state == self.wf.progress.state:
                    out[-1].anchors.append(e.at)
            elif out:
                if e.actor != SYSTEM:
                    out[-1].actors.append((e.at, e.actor, e.action))
                if e.action == self.wf.progress.action:
                    out[-1].anchors.append(e.at)
        return out

    @staticmethod
    def _entry_at(entries: list[_Entry], at: dt.datetime) -> _Entry | None:
        for entry in reversed(entries):
            if entry.start <= at:
                return entry
        return None

    def _replay(self, by_pid: dict[int, list[Event]], rows: dict[int | None, tuple[str, int]]) -> Check:
        check = Check("replay of the event log reproduces every proposal's state")
        for pid, evs in by_pid.items():
            try:
                replayed = (self.lifecycle.replay(evs), self.lifecycle.replay_text_version(evs))
            except ValueError as exc:
                check.expect(False, f"proposal {pid}: {exc}")
                continue
            check.expect(replayed == rows.get(pid), f"proposal {pid}: replay gives {replayed}, row says {rows.get(pid)}")
        return check

    def _reminders(self, by_pid: dict[int, list[Event]], entries: dict[int, list[_Entry]]) -> list[Check]:
        once = Check("every reminder issued exactly once per (proposal, state entry, offset), on time")
        nobody_acted = Check("no reminder to someone who had already acted")
        issued: dict[tuple[int, dt.datetime, int], list[Event]] = defaultdict(list)
        for pid, evs in by_pid.items():
            for e in evs:
                if e.action != "remind":
                    continue
                entry = self._entry_at(entries[pid], e.at)
                if entry is None:
                    once.expect(False, f"proposal {pid}: reminder at {e.at} before the proposal existed")
                    continue
                issued[(pid, entry.start, int(e.payload["offset_days"]))].append(e)
                recipients = list(e.payload["recipients"])
                before = [(a, act) for at, a, act in entry.actors if at <= e.at]
                acted = {a for a, _ in before}
                # In a round a state has acted once one of its heads endorsed: its other heads need no reminder.
                endorsed = {self.heads_country.get(a) for a, act in before if act == self.wf.endorsement.endorse}
                in_round = entry.state == self.wf.endorsement.state
                late = [r for r in recipients if r in acted or (in_round and self.heads_country.get(r) in endorsed)]
                nobody_acted.expect(
                    not late and len(set(recipients)) == len(recipients) and bool(recipients),
                    f"proposal {pid}: reminder at {e.at:%Y-%m-%d %H:%M} to {late or recipients} (already acted or duplicated)",
                )
        for pid, stays in entries.items():
            for entry in stays:
                state = self.wf.state(entry.state)
                if state.sla_days is None:
                    continue
                deadline = entry.start + dt.timedelta(days=state.sla_days)
                for offset in state.reminders:
                    at = deadline - dt.timedelta(days=offset)
                    got = issued.pop((pid, entry.start, offset), [])
                    if self._active_at_sweep(entry, at):
                        ok = len(got) == 1 and got[0].at == self.grid(at)
                        once.expect(ok, f"proposal {pid} ({entry.state} from {entry.start:%Y-%m-%d %H:%M}): "
                                        f"{len(got)} reminders {offset} days before, at {[e.at.isoformat() for e in got]}")
                    else:
                        once.expect(not got, f"proposal {pid}: reminder {offset} days before although the stay ended")
        for key, extra in issued.items():
            once.expect(False, f"proposal {key[0]}: {len(extra)} reminders with offset {key[2]} outside any stay")
        return [once, nobody_acted]

    def _escalations(self, by_pid: dict[int, list[Event]], entries: dict[int, list[_Entry]]) -> Check:
        check = Check("every overdue item escalated once per level, when due (deadlines and progress reports)")
        issued: dict[tuple[int, str, int], list[Event]] = defaultdict(list)
        for pid, evs in by_pid.items():
            for e in evs:
                if e.action in ("escalate", "progress_due"):
                    key = e.payload["deadline"] if e.action == "escalate" else e.payload["due"]
                    issued[(pid, key, int(e.payload.get("level", 0)))].append(e)
        steps = [(0, "progress_due", -self.wf.progress.reminder_days)] + [
            (i, "escalate", e.after_days) for i, e in enumerate(self.wf.escalation, 1)
        ]
        for pid, stays in entries.items():
            for entry in stays:
                state = self.wf.state(entry.state)
                due_dates: list[tuple[dt.datetime, _Entry, dt.datetime | None]] = []
                if entry.state == self.wf.progress.state:
                    for i, anchor in enumerate(entry.anchors):
                        cycle_end = entry.anchors[i + 1] if i + 1 < len(entry.anchors) else entry.end
                        due_dates.append((anchor + dt.timedelta(days=self.wf.progress.cadence_days), entry, cycle_end))
                elif state.sla_days is not None and entry.state != self.wf.endorsement.state:
                    due_dates.append((entry.start + dt.timedelta(days=state.sla_days), entry, entry.end))
                for due, stay, cycle_end in due_dates:
                    cycle = _Entry(pid, stay.state, stay.start, cycle_end)
                    for level, kind, days in steps:
                        if kind == "progress_due" and stay.state != self.wf.progress.state:
                            continue
                        at = due + dt.timedelta(days=days)
                        got = issued.pop((pid, due.isoformat(), level), [])
                        if self._active_at_sweep(cycle, at):
                            check.expect(
                                len(got) == 1 and got[0].at == self.grid(at) and got[0].action == kind,
                                f"proposal {pid}: {kind} {level} for {due:%Y-%m-%d %H:%M}: {len(got)} events "
                                f"at {[e.at.isoformat() for e in got]}, expected one at {self.grid(at).isoformat()}",
                            )
                        else:
                            check.expect(not got, f"proposal {pid}: {kind} {level} for {due:%Y-%m-%d} after the item was done")
        for key, extra in issued.items():
            check.expect(False, f"proposal {key[0]}: {len(extra)} unexpected escalations/progress notices for {key[1]}")
        return check

    def _rounds(self, by_pid: dict[int, list[Event]], entries: dict[int, list[_Entry]]) -> Check:
        check = Check("every endorsement round still open at its deadline closed then (silence procedure)")
        rnd = self.wf.endorsement
        sla = dt.timedelta(days=self.wf.state(rnd.state).sla_days or 0)
        for pid, stays in entries.items():
            silences = {e.at: e for e in by_pid[pid] if e.action == rnd.silence}
            for entry in stays:
                if entry.state != rnd.state:
                    continue
                deadline = entry.start + sla
                g = self.grid(deadline)
                if g > self.end:
                    continue
                open_at_deadline = entry.end is None or entry.end >= g
                closed_by_silence = entry.end == g and g in silences
                if open_at_deadline:
                    check.expect(closed_by_silence, f"proposal {pid}: round from {entry.start:%Y-%m-%d %H:%M} "
                                                    f"not closed at {g.isoformat()} (ended {entry.end})")
                else:
                    check.expect(entry.end not in silences, f"proposal {pid}: silence before the deadline")
        return check

    def _handovers(self, by_pid: dict[int, list[Event]], entries: dict[int, list[_Entry]]) -> Check:
        check = Check("proposals awaiting approval handed over to the new presiding region on the term's first day")
        approval = self.lifecycle.approval_states
        terms = sorted(self.lifecycle.definition.presiding_terms, key=lambda t: t.start)
        for prev, term in itertools.pairwise(terms):
            start = dt.datetime.combine(term.start, dt.time(), tzinfo=dt.UTC)
            if not self.start < start <= self.end:
                continue
            for pid, stays in entries.items():
                handovers = [e for e in by_pid[pid] if e.action == "handover" and e.payload.get("to_region") == term.region]
                waiting = [e for e in stays if e.state in approval and e.start < start and (e.end is None or e.end > start)]
                if waiting:
                    check.expect(
                        len(handovers) == 1 and handovers[0].at == start
                        and handovers[0].payload.get("from_region") == prev.region,
                        f"proposal {pid}: {len(handovers)} hand-overs to {term.region} "
                        f"at {[e.at.isoformat() for e in handovers]}",
                    )
                else:
                    check.expect(not handovers, f"proposal {pid}: hand-over to {term.region} while not awaiting approval")
        return check


def check_mail(engine: Engine, maildir: Path | None) -> Check:
    """Every reminder recipient has exactly one delivery; with a Maildir: sent, and stored there exactly once."""
    from models.outbox import Delivery, DeliveryStatus

    where = "outbox and Maildir" if maildir is not None else "outbox"
    check = Check(f"every reminder mailed exactly once to each of its recipients ({where})")
    with session_scope(engine) as s:
        reminders = list(s.exec(select(Event).where(Event.action == "remind")))
        rows = s.exec(
            select(Delivery.event_id, Delivery.recipient, Delivery.status, Delivery.message_id).where(
                col(Delivery.event_id).in_([e.id for e in reminders])
            )
        ).all() if reminders else []
    by_event: dict[int | None, list[tuple[str, str, str | None]]] = defaultdict(list)
    for event_id, recipient, status, message_id in rows:
        by_event[event_id].append((recipient, status, message_id))
    in_maildir = _message_ids(maildir) if maildir is not None else None
    for e in reminders:
        got = by_event.get(e.id, [])
        wanted = sorted(e.payload["recipients"])
        check.expect(sorted(r for r, _, _ in got) == wanted, f"reminder event {e.id}: deliveries {got}, recipients {wanted}")
        if in_maildir is None:
            continue
        for recipient, status, message_id in got:
            copies = in_maildir.get(message_id or "", 0)
            check.expect(
                status == DeliveryStatus.SENT and copies == 1,
                f"reminder event {e.id} to {recipient}: status {status}, {copies} copies in the Maildir",
            )
    return check


def check_planning(engine: Engine, config: SimulationConfig) -> Check:
    """Every event was planned (outbox) by the dispatch right after its simulated hour, no earlier and no later."""
    from models.outbox import PlannedEvent

    check = Check("every event planned by the dispatch that followed its hour")
    start = config.start
    with session_scope(engine) as s:
        rows = s.exec(
            select(Event.id, Event.at, PlannedEvent.planned_at)
            .outerjoin(PlannedEvent, col(PlannedEvent.event_id) == col(Event.id))
            .order_by(col(Event.id))
        ).all()
    for event_id, at, planned_at in rows:
        expected = _grid(start, at)
        check.expect(planned_at == expected, f"event {event_id} at {at.isoformat()}: planned at {planned_at}, not {expected}")
    return check


def _message_ids(maildir: Path) -> Counter[str]:
    """Message-IDs of every message in the Maildir (headers only)."""
    parser = email.parser.BytesHeaderParser()
    counts: Counter[str] = Counter()
    for sub in ("new", "cur"):
        folder = maildir / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            with path.open("rb") as fh:
                msg = parser.parse(fh)
            counts[(msg.get("Message-ID") or "").strip()] += 1
    return counts


def summary_rows(result: SimulationResult) -> Iterable[tuple[str, str]]:
    """The figures of a run as (label, value) rows."""
    r = result.review
    yield "simulated", f"{result.config.proposals} proposals, {result.config.days} days from {result.config.start:%Y-%m-%d}"
    yield "wall time", f"{result.seconds:.1f} s"
    yield "time spent", timing_text(result)
    yield "actions taken", str(result.actions)
    yield "review sweeps", (f"{result.sweeps} hours reviewed, a sweep run in {result.sweeps_run} "
                            "(the others had nothing due)")
    yield "review events", (f"{r.reminders} reminders, {r.escalations} escalations, {r.closed} rounds closed by silence, "
                            f"{r.handovers} hand-overs, {r.progress_due} progress requests ({r.skipped} steps skipped)")
    yield "mail", f"{result.planned} deliveries planned, {result.sent} sent"
    yield "final states", ", ".join(f"{k} {v}" for k, v in sorted(result.states.items()))


def timing_text(result: SimulationResult) -> str:
    """Where the wall time went: seconds and share of each part (sending only when mail was sent)."""
    t, total = result.timings, result.seconds or 1.0
    parts = [p for p in t.PARTS if p != "sending" or t.sending]
    return ", ".join(f"{p} {getattr(t, p):.1f} s ({getattr(t, p) / total:.0%})" for p in parts)


def result_json(result: SimulationResult) -> dict[str, Any]:
    """The run as plain data."""
    return {
        "config": {"proposals": result.config.proposals, "days": result.config.days, "seed": result.config.seed,
                   "start": result.config.start.isoformat()},
        "seconds": round(result.seconds, 2),
        "timings": result.timings.as_dict(),
        "actions": result.actions,
        "refused": result.refused[:20],
        "sweeps": result.sweeps,
        "sweeps_run": result.sweeps_run,
        "review": result.review.as_dict(),
        "planned": result.planned,
        "sent": result.sent,
        "states": dict(result.states),
        "checks": [{"name": c.name, "ok": c.ok, "checked": c.checked, "failures": c.failures[:20]} for c in result.checks],
        "ok": result.ok,
    }


def run_simulation(
    settings: Settings, definition: ForumDefinition, config: SimulationConfig, *, mail: bool = False,
) -> tuple[SimulationResult, Path]:
    """Simulate in a fresh SQLite database under ``<data dir>/simulation``; check; return the folder.

    Dispatch runs after every simulated hour in which something was written: deliveries are planned (the
    outbox, which is checked; only events after those already planned are looked at) and, with
    ``mail``, sent into a local SMTP sink writing ``<folder>/maildir``, which is checked too (rendering every
    mail of a forum year costs minutes).
    """
    import shutil

    import notifications
    from models.db import create_schema, make_engine
    from models.sync import sync_definition
    from notifications import planning
    from notifications.sink import MailSink

    began = time.perf_counter()
    folder = (settings.data_dir / "simulation").resolve()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder / 'forumflow.db'}"
    setup = make_engine(url)  # the schema lock needs a plain engine
    try:
        create_schema(setup)
    finally:
        setup.dispose()
    engine = make_engine(url, scratch=True)
    lifecycle = Lifecycle(definition)
    with session_scope(engine) as s:
        sync_definition(s, definition)
    sink = MailSink(folder / "maildir", port=0) if mail else None
    try:
        if sink is not None:
            sink.start()
        mail_settings = settings.model_copy(
            update={"smtp_host": sink.host, "smtp_port": sink.port, "smtp_tls": "none", "smtp_username": None,
                    "smtp_password": None}
        ) if sink is not None else settings

        planned_up_to = 0  # every event up to this id is planned (the simulation is its database's only writer)

        def planner(session: Session, now: dt.datetime) -> int:
            """Plan deliveries for the new events (the outbox)."""
            nonlocal planned_up_to
            planned = planning.plan_events(session, lifecycle, now=now, after_id=planned_up_to)
            planned_up_to = planned.last_event_id
            return planned.deliveries

        def sender(now: dt.datetime) -> tuple[int, int]:
            """Send what is due into the sink."""
            report = notifications.send_pending(engine, mail_settings, lifecycle, now=now)
            return report.sent, report.retrying

        simulator = Simulator(engine, lifecycle, config, planner=planner, sender=sender if sink is not None else None)
        result = simulator.run()
        t0 = time.perf_counter()
        result.checks = Checker(engine, lifecycle, config).run()
        result.checks.append(check_mail(engine, folder / "maildir" if sink is not None else None))
        result.checks.append(check_planning(engine, config))
        result.timings.checks = time.perf_counter() - t0
        log.info("invariants checked in %.1f s", result.timings.checks)
    finally:
        if sink is not None:
            sink.stop()
        engine.dispose()
    result.seconds = time.perf_counter() - began
    result.timings.settle(result.seconds)
    return result, folder
