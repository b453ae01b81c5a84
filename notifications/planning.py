"""Planning: turn events that have no deliveries yet into outbox rows (idempotent).

Two runs may plan the same events at the same moment (two dispatchers, or a dispatch beside the
scheduled flow). Both insert with ON CONFLICT DO NOTHING, so the one that comes second waits for the
first, inserts nothing for the rows that exist, and counts only what it created.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, Select, bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlmodel import Session, SQLModel, col

from models.db import DriverStatement, as_loaded
from models.lifecycle import Lifecycle, Roster, utc
from models.outbox import Delivery, DeliveryKind, DeliveryStatus, PlannedEvent
from models.roster import People, people, token_column
from models.tables import Event, Member, PresidingTerm, Proposal
from notifications.recipients import Audience, RecipientRules, is_critical
from notifications.render import member_zone

log = logging.getLogger(__name__)

# A digest covers the day before this local hour and goes out from it on.
DIGEST_HOUR = 7
PLAN_CHUNK = 500
# Notices that ask their recipients to act: they reach only those who still must.
_TO_ACTORS = ("remind", "progress_due")


@dataclass
class Directory:
    """The people of the forum, loaded once per run: who is who, in which group, presiding when."""

    members: dict[str, Member]
    chairs: dict[str, str]
    deputy_chairs: dict[str, str]
    group_names: dict[str, str]
    group_members: dict[str, list[str]]
    heads: dict[str, str]  # handle -> region
    secretariat: list[str]
    terms: list[PresidingTerm]
    forum: People | None = field(default=None, repr=False, compare=False)  # the roster it was built from

    @classmethod
    def load(cls, session: Session, token: str | None = None, *, known: bool = False) -> Directory:
        """The forum's people from the process's roster (``models.roster``, read again when the definition changes).

        Built once per roster (shared, never changed): a directory is only read. ``token``, ``known``: the
        definition generation's token when the caller read it already (``models.roster.people``).
        """
        forum = people(session, token, known=known)
        with _directories_lock:
            cached = _directories.get(id(forum))
            if cached is not None and cached[0] is forum:
                return cached[1]
        built = cls.of(forum)
        with _directories_lock:
            _directories[id(forum)] = (forum, built)
            while len(_directories) > _KEEP_DIRECTORIES:
                _directories.pop(next(iter(_directories)))
        return built

    @classmethod
    def of(cls, forum: People) -> Directory:
        """The directory of one roster."""
        members = dict(forum.members)
        groups = forum.groups.values()
        return cls(
            members=members,
            chairs={g.key: g.chair for g in groups},
            deputy_chairs={g.key: g.deputy_chair for g in groups if g.deputy_chair and g.deputy_chair in members},
            group_names={g.key: g.name for g in groups},
            group_members={k: sorted(h for h in v if h in members) for k, v in forum.memberships.items()},
            heads={h: m.region for h, m in forum.heads.items() if m.region},
            secretariat=sorted(forum.secretariat),
            terms=list(forum.terms),
            forum=forum,
        )

    def presiding_region(self, at: dt.datetime) -> str | None:
        """The region whose term covers the UTC date of ``at``."""
        day = at.astimezone(dt.UTC).date()
        return next((t.region for t in self.terms if t.start <= day <= t.end), None)

    def presiding_deputy(self, at: dt.datetime) -> str | None:
        """The deputy of the presiding term that covers the UTC date of ``at`` (if it names an active member)."""
        day = at.astimezone(dt.UTC).date()
        deputy = next((t.deputy for t in self.terms if t.start <= day <= t.end), None)
        return deputy if deputy in self.members else None

    def presiding_heads(self, at: dt.datetime) -> frozenset[str]:
        """Heads of the region presiding at ``at``."""
        region = self.presiding_region(at)
        return frozenset(h for h, r in self.heads.items() if r == region)

    def audience(self, event: Event, proposal: Proposal) -> Audience:
        """Everyone a rule may name for ``event``."""
        payload = event.payload or {}
        named = payload.get("recipients", [])
        earlier = payload.get("earlier_endorsers", [])
        return Audience(
            author=proposal.author,
            chair=self.chairs.get(proposal.group, ""),
            group_members=self.group_members.get(proposal.group, []),
            heads=self.heads,
            secretariat=self.secretariat,
            presiding_region=self.presiding_region(event.at),
            recipients=[str(h) for h in named] if isinstance(named, list) else [],
            earlier_endorsers=[str(h) for h in earlier] if isinstance(earlier, list) else [],
            deputy_chair=self.deputy_chairs.get(proposal.group),
            presiding_deputy=self.presiding_deputy(event.at),
        )


# Directories built per roster (``People`` is immutable), keyed by its id and holding it so the id stays its own.
_KEEP_DIRECTORIES = 16
_directories: dict[int, tuple[People, Directory]] = {}
_directories_lock = threading.Lock()


def digest_due(at: dt.datetime, tz: dt.tzinfo, hour: int = DIGEST_HOUR) -> dt.datetime:
    """When the digest item of an event at ``at`` is due: the next ``hour`` o'clock in ``tz``, in UTC."""
    local = at.astimezone(tz)
    day = local.date() if local.hour < hour else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(hour), tzinfo=tz).astimezone(dt.UTC)


@dataclass(frozen=True)
class Planned:
    """What one planning run did: deliveries created, events examined, the greatest id looked at (else ``after_id``)."""

    deliveries: int = 0
    events: int = 0
    last_event_id: int = 0


def plan_deliveries(session: Session, lifecycle: Lifecycle, *, now: dt.datetime) -> int:
    """Create the deliveries of every event not planned yet; returns the number of new rows (0 on a re-run)."""
    return plan_events(session, lifecycle, now=now).deliveries


def plan_events(session: Session, lifecycle: Lifecycle, *, now: dt.datetime, after_id: int = 0) -> Planned:
    """Create the deliveries of every event not planned yet; what was done.

    ``after_id``: look only at events with a greater id. For a caller that knows every earlier event was
    planned (the only writer of its database, which planned up to there: ``last_event_id``); finding the
    unplanned events among all of them means looking at every event.
    """
    now = utc(now)
    # Loaded on the first unplanned event only: most scheduled runs find nothing to plan.
    rules: RecipientRules | None = None
    people: Directory | None = None
    roster: Roster | None = None
    statements = _statements(session)
    created = examined = 0
    connection = session.connection()
    while True:
        found = connection.execute(statements.unplanned, {"after_id": after_id}).all()
        if not found:
            break
        events, proposals = _loaded(session, found)
        if rules is None or people is None or roster is None:
            rules, people = RecipientRules(lifecycle.definition), Directory.load(session, found[0][-1], known=True)
            roster = Roster(session, now, people.forum)
        # Who must still act, as of now, for the proposals that got reminders: someone may have acted since.
        reminded = {e.proposal_id: proposals[e.proposal_id] for e in events if e.action in _TO_ACTORS}
        still = lifecycle.must_act_many(session, list(reminded.values()), now, roster=roster) if reminded else {}
        rows: list[dict[str, Any]] = []
        marks: list[dict[str, Any]] = []
        for event in events:
            proposal = proposals[event.proposal_id]
            handles = _recipients(rules, people, event, proposal, still.get(event.proposal_id, []))
            new = [row for h in handles if (row := _row(event, people.members[h], now)) is not None]
            rows += new
            marks.append({"event_id": event.id, "planned_at": now, "deliveries": len(new)})
        new_rows = statements.insert(session, statements.deliveries, rows)
        marked = statements.insert(session, statements.marks, marks)
        if marked < len(marks) or new_rows < len(rows):
            log.info(
                "another run planned %d of these %d events at the same time; their deliveries are left as it made them",
                len(marks) - marked, len(marks),
            )
        created += new_rows
        examined += len(events)
        after_id = max(after_id, events[-1].id or 0)
        log.debug("planned %d events, %d deliveries", marked, new_rows)
        if len(events) < PLAN_CHUNK:
            break  # that was the last of them: no need to ask again
    if created:
        log.info("planned %d deliveries", created)
    return Planned(created, examined, after_id)


# The columns ``unplanned`` reads: every column of the event, then the proposal's but its texts (not needed here:
# not reading them keeps the rows light), by attribute name.
_EVENT_KEYS = tuple(c.key for c in Event.__table__.columns)  # type: ignore[attr-defined]
_PROPOSAL_KEYS = tuple(c.key for c in Proposal.__table__.columns if c.key not in ("title", "summary", "body"))  # type: ignore[attr-defined]
_EVENT_WIDTH, _PROPOSAL_END = len(_EVENT_KEYS), len(_EVENT_KEYS) + len(_PROPOSAL_KEYS)
_PROPOSAL_ID = _EVENT_WIDTH + _PROPOSAL_KEYS.index("id")


def _loaded(session: Session, rows: Sequence[Row[Any]]) -> tuple[list[Event], dict[int | None, Proposal]]:
    """The events of ``unplanned``'s rows and their proposals, as a query of the two entities would give them.

    Read with a Core statement (an ORM query of two entities costs more than the few rows it reads), as
    instances the session holds when it has them, else instances only the caller holds (``as_loaded``).
    """
    events: list[Event] = []
    proposals: dict[int | None, Proposal] = {}
    for row in rows:
        events.append(as_loaded(session, Event, dict(zip(_EVENT_KEYS, row[:_EVENT_WIDTH], strict=True)), attach=False))
        pid = row[_PROPOSAL_ID]
        if pid not in proposals:
            values = dict(zip(_PROPOSAL_KEYS, row[_EVENT_WIDTH:_PROPOSAL_END], strict=True))
            proposals[pid] = as_loaded(session, Proposal, values, attach=False)
    return events, proposals


@dataclass(frozen=True)
class _Statements:
    """The statements of a planning run, built once per database backend."""

    # The next chunk of unplanned events after :after_id, each with its proposal (without the texts), and the
    # definition generation's token (for the roster): Core rows, columns as ``_loaded`` reads them.
    unplanned: Select[Any]
    deliveries: Insert  # INSERT ... ON CONFLICT DO NOTHING (counted by rowcount), or ... RETURNING the new ids
    marks: Insert
    counted: bool  # the driver counts the rows an executemany inserted (cheaper than RETURNING them)

    def insert(self, session: Session, statement: Insert, rows: list[dict[str, Any]]) -> int:
        """Insert ``rows`` that are not there yet; how many were."""
        if not rows:
            return 0
        connection = session.connection()
        if self.counted:  # on the driver's cursor: SQLAlchemy's parameter handling would cost more than the inserts
            driver = DriverStatement.for_dialect(statement, connection.dialect, tuple(rows[0]))
            return driver.executemany(connection, rows)
        return len(connection.execute(statement, rows).all())


_STATEMENTS: dict[str, _Statements] = {}


def _statements(session: Session) -> _Statements:
    dialect = session.get_bind().dialect
    known = _STATEMENTS.get(dialect.name)
    if known is not None:
        return known
    events, proposals = Event.__table__, Proposal.__table__  # type: ignore[attr-defined]
    # sqlite3 sums the rows an executemany inserted; psycopg's pipelined executemany does not tell (-1).
    counted = dialect.name == "sqlite"
    deliveries, marks = _insert_new(session, Delivery), _insert_new(session, PlannedEvent)
    built = _Statements(
        unplanned=sa_select(*events.columns, *(proposals.c[key] for key in _PROPOSAL_KEYS), token_column())
        .join(proposals, proposals.c.id == events.c.proposal_id)
        .outerjoin(PlannedEvent, col(PlannedEvent.event_id) == events.c.id)
        .where(col(PlannedEvent.event_id).is_(None), events.c.id > bindparam("after_id"))
        .order_by(events.c.id)
        .limit(PLAN_CHUNK),
        deliveries=deliveries if counted else deliveries.returning(col(Delivery.id)),
        marks=marks if counted else marks.returning(col(PlannedEvent.event_id)),
        counted=counted,
    )
    _STATEMENTS[dialect.name] = built
    return built


def _insert_new(session: Session, model: type[SQLModel]) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING for ``model`` on the session's backend (SQLite or PostgreSQL)."""
    table = SQLModel.metadata.tables[str(model.__tablename__)]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"planning needs INSERT ... ON CONFLICT, which forumflow does not know for {dialect}")


def _recipients(rules: RecipientRules, people: Directory, event: Event, proposal: Proposal, must_act: list[str]) -> list[str]:
    """Active members who must hear about ``event``; notices whose moment has passed reach nobody."""
    audience = people.audience(event, proposal)
    action = event.action
    current = proposal.state == event.to_state and proposal.state_entered_at <= event.at
    if action in ("remind", "escalate") and not current:
        return []  # the proposal moved on since the notice: nothing is owed any more
    if action == "progress_due" and proposal.last_progress_at is not None and proposal.last_progress_at > event.at:
        return []
    if action in _TO_ACTORS:
        audience.recipients = [h for h in audience.recipients if h in must_act]
    return [h for h in rules.resolve(action, event.actor, audience) if h in people.members]


def _row(event: Event, member: Member, now: dt.datetime) -> dict[str, Any] | None:
    """The outbox row for one recipient, following their preference; None when they want no mail."""
    critical = is_critical(event.action)
    kind, due = DeliveryKind.EVENT, now
    if not critical and member.notify == "off":
        return None
    if not critical and member.notify == "digest":
        kind, due = DeliveryKind.DIGEST_ITEM, max(now, digest_due(event.at, member_zone(member)))
    return {
        "event_id": event.id,
        "recipient": member.handle,
        "email": member.email,
        "kind": kind.value,
        "critical": critical,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": due,
        "last_error": "",
        "created_at": now,
    }
