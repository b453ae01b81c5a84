"""Sending the outbox: claim due deliveries, render them, send them over SMTP, record each outcome.

A run claims a batch in one short transaction (a conditional UPDATE ... RETURNING, so two dispatchers
never take the same row) and leases it: if the process dies, the rows are due again when the lease ends.
The same UPDATE gives each delivery tried for the first time its Message-ID, kept for every later try.
Each outcome is written once the server has answered, at the latest before that connection sends its
next DATA (outcomes queued meanwhile by other connections share the transaction: one UPDATE of one row per
mail, a transaction per group). A crash therefore repeats at most the mails in flight, one per connection;
their Message-ID is the same on the resend, so a receiver can tell.

Only the server's answers about a mail use up its attempts (4xx: retry with backoff; 5xx: dead). When
the server cannot be reached, the mail waits for it without losing an attempt, however long the outage.

What a mail costs forumflow beside the SMTP exchange is kept small (bench/dispatch.py weighs it against raw
aiosmtplib): the roster, events and proposals are read once per run, mails about one event to readers of one
kind share their rendering (``notifications.render``), outcomes go through the driver's cursor with statements
compiled once, and no ORM object is made per mail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import functools
import gc
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, Table, bindparam, cast, func, literal, update
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.sql.dml import Update
from sqlmodel import Session, col, select

from config.settings import Settings
from models.clock import check_run_time
from models.db import DriverStatement, session_scope
from models.lifecycle import Lifecycle, utc
from models.outbox import Delivery, DeliveryKind, DeliveryStatus, wipe_messages
from models.tables import Event, Member, Proposal
from notifications.mail import build_mail
from notifications.planning import Directory, plan_deliveries
from notifications.render import EventView, Rendered, Renderer, member_zone
from notifications.smtp import Outcome, Outgoing, SmtpConfig, SmtpPool, run_sending

log = logging.getLogger(__name__)

BATCH = 500
DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff after a 4xx, then give up (status ``failed``); a steady wait while the server is down."""

    base: dt.timedelta = dt.timedelta(minutes=1)
    cap: dt.timedelta = dt.timedelta(hours=1)
    max_attempts: int = 10
    lease: dt.timedelta = dt.timedelta(minutes=15)
    # After a mail's transaction broke off without an answer (dropped connection, timeout, 421): try it again
    # this much later, with no attempt used up. Mails not tried at all because the server was unreachable are
    # due again at once: the next run tries them (each run stops at the first connection that fails).
    unreachable_wait: dt.timedelta = dt.timedelta(minutes=1)

    def delay(self, attempts: int) -> dt.timedelta:
        """The wait after the ``attempts``-th failed try: base, 2 x base, 4 x base ... up to the cap."""
        doublings = max(0, attempts - 1)
        if doublings >= 30 or self.base * 2**doublings >= self.cap:  # 2**30 minutes would not fit a timedelta
            return self.cap
        return self.base * 2**doublings


@dataclass
class SendReport:
    """What one sending run did."""

    attempted: int = 0  # claimed by this run
    sent: int = 0
    retrying: int = 0  # pending again: refused for now (4xx), or not tried because the server was unreachable
    failed: int = 0
    dead: int = 0
    digests: int = 0
    unreachable: int = 0  # of ``retrying``: waiting for the server, no attempt used up
    errors: list[str] = field(default_factory=list)

    def add(self, other: SendReport) -> None:
        """Add up the counts of another run."""
        for name in ("attempted", "sent", "retrying", "failed", "dead", "digests", "unreachable"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors


@dataclass
class DispatchReport:
    """Planning and sending, once."""

    planned: int
    send: SendReport


def send_pending(
    engine: Engine, settings: Settings, lifecycle: Lifecycle, *, now: dt.datetime, limit: int | None = None,
    policy: RetryPolicy | None = None,
) -> SendReport:
    """Send every delivery due at ``now`` (at most ``limit``), daily digests included; blocks until done."""
    now = utc(now)
    policy = policy or RetryPolicy()
    config = SmtpConfig.from_settings(settings)
    with session_scope(engine) as session:
        digests = bundle_digests(session, now=now)
        wipe_messages(session, now=now)  # sign-in links that expired unsent are given up, not sent
    renderer = Renderer(lifecycle.definition, base_url=settings.base_url)
    with _long_lived_heap():
        report = _run_async(_send(engine, config, renderer, now=now, limit=limit, policy=policy))
    report.digests = digests
    with session_scope(engine) as session:
        wipe_messages(session, now=now)  # sign-in links just sent leave the outbox
    log.info(
        "sent %d of %d (%d to retry, %d of them for an unreachable server; %d failed, %d dead, %d digests bundled)",
        report.sent, report.attempted, report.retrying, report.unreachable, report.failed, report.dead, digests,
    )
    return report


@contextlib.contextmanager
def _long_lived_heap() -> Iterator[None]:
    """Leave what the process held before sending out of the garbage collector's full passes until sending ends.

    Sending makes many short-lived objects, which set off collections of the oldest generation now and then;
    each would walk the whole heap (in a process holding Prefect, hundreds of thousands of objects) although
    nothing in it became garbage because of the run. The objects go back to the oldest generation afterwards.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _run_async(coro: Coroutine[Any, Any, SendReport]) -> SendReport:
    """Run ``coro`` to the end on a loop of its own (``run_sending``); from inside a running event loop (an async
    caller), in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_sending(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="forumflow-send") as pool:
        return pool.submit(run_sending, coro).result()


def dispatch_once(engine: Engine, settings: Settings, lifecycle: Lifecycle, *, now: dt.datetime) -> DispatchReport:
    """Plan deliveries for new events (own transaction), then send what is due; refuses a ``now`` before the newest event.

    Settings that cannot send (a missing CA file, no host) are refused first: nothing is planned then.
    """
    SmtpConfig.from_settings(settings)
    now = check_run_time(engine, now, run="dispatch")
    with session_scope(engine) as session:
        planned = plan_deliveries(session, lifecycle, now=now)
    return DispatchReport(planned=planned, send=send_pending(engine, settings, lifecycle, now=now))


# ---------------------------------------------------------------------- digests
def bundle_digests(session: Session, *, now: dt.datetime) -> int:
    """Gather each member's due digest items into one digest delivery per member and local day."""
    now = utc(now)
    due = (
        col(Delivery.kind) == DeliveryKind.DIGEST_ITEM,
        col(Delivery.digest_id).is_(None),
        col(Delivery.status) == DeliveryStatus.PENDING,
        col(Delivery.next_attempt_at) <= now,
    )
    handles = list(session.exec(select(Delivery.recipient).where(*due).group_by(col(Delivery.recipient))))
    if not handles:
        return 0
    members = {m.handle: m for m in session.exec(select(Member).where(col(Member.handle).in_(handles)))}
    created = 0
    for handle in handles:
        member = members[handle]
        day = now.astimezone(member_zone(member)).date()
        exists = session.exec(
            select(func.count()).select_from(Delivery).where(Delivery.recipient == handle, Delivery.digest_day == day)
        ).one()
        if exists:
            continue  # today's digest is gone already; these items wait for tomorrow's
        digest = Delivery(
            recipient=handle, email=member.email, kind=DeliveryKind.DIGEST, status=DeliveryStatus.PENDING,
            next_attempt_at=now, created_at=now, digest_day=day,
        )
        session.add(digest)
        session.flush()
        session.execute(
            update(Delivery).where(*due, col(Delivery.recipient) == handle).values(digest_id=digest.id)
            .execution_options(synchronize_session=False)
        )
        created += 1
    return created


# ---------------------------------------------------------------------- sending
@dataclass(slots=True)
class _Claimed:
    """A claimed delivery: the columns that sending and recording need, as plain values (no ORM object)."""

    id: int
    kind: str
    recipient: str
    email: str
    event_id: int | None
    attempts: int
    message_id: str  # given by the claim if the delivery had none
    digest_day: dt.date | None
    message: dict[str, Any] | None


_CLAIMED_COLUMNS = tuple(DELIVERY.c[name] for name in _Claimed.__slots__)  # type: ignore[attr-defined]


async def _send(
    engine: Engine, config: SmtpConfig, renderer: Renderer, *, now: dt.datetime, limit: int | None, policy: RetryPolicy,
) -> SendReport:
    report = SendReport()
    mails = _Mails(renderer, config, now=now)
    writer = _Writer(engine, now=now, policy=policy, report=report)
    try:
        async with SmtpPool(config) as pool:
            while limit is None or report.attempted < limit:
                size = BATCH if limit is None else min(BATCH, limit - report.attempted)
                with session_scope(engine) as session:
                    claimed = _claim(session, now=now, size=size, policy=policy, domain=config.sender.domain)
                    jobs = mails.jobs(session, claimed) if claimed else []
                if not claimed:
                    break
                report.attempted += len(claimed)
                recorder = _Recorder(writer, claimed)
                outcomes = await pool.send(jobs, recorder)
                recorder.rest(outcomes)  # the mails not tried: the server went away
                if pool.down:
                    report.errors.append(pool.down)
                    break  # the server is unreachable: leave the rest for the next run
    finally:
        writer.close()
    return report


def _claim(session: Session, *, now: dt.datetime, size: int, policy: RetryPolicy, domain: str) -> list[_Claimed]:
    """Take up to ``size`` due deliveries and lease them, in one conditional UPDATE (no attempt counted yet).

    The UPDATE returns what sending needs. A delivery tried for the first time gets its Message-ID in it too,
    kept for every later try: ``<token.id@domain>``, the token drawn for this claim (so unique to it), the id
    unique in the database.
    """
    due = (
        DELIVERY.c.kind.in_([DeliveryKind.EVENT, DeliveryKind.DIGEST, DeliveryKind.MESSAGE]),
        DELIVERY.c.status == DeliveryStatus.PENDING,
        DELIVERY.c.next_attempt_at <= now,
    )
    candidates = (
        select(DELIVERY.c.id).where(*due).order_by(DELIVERY.c.next_attempt_at, DELIVERY.c.id).limit(size)
    ).scalar_subquery()
    fresh_id = literal(f"<{uuid.uuid4().hex}.") + cast(DELIVERY.c.id, String) + literal(f"@{domain}>")
    claimed = (
        update(DELIVERY).where(DELIVERY.c.id.in_(candidates), *due)
        .values(next_attempt_at=now + policy.lease, message_id=func.coalesce(DELIVERY.c.message_id, fresh_id))
        .returning(*_CLAIMED_COLUMNS)
    )
    return sorted((_Claimed(*row) for row in session.execute(claimed)), key=lambda c: c.id)


@dataclass(frozen=True, slots=True)
class _Reader:
    """A recipient as rendering reads them (``notifications.render.Reader``), read off the member once per run."""

    handle: str
    name: str
    language: str
    timezone: str
    notify: str


class _Mails:
    """Builds the claimed deliveries' mails; what it loads (people, events, proposals) serves the whole run.

    A job renders its mail when its turn comes; mails about one event to readers of one kind share one
    ``Layout`` (see ``notifications.render``), so most jobs only fill in the name and put the envelope on.
    """

    def __init__(self, renderer: Renderer, config: SmtpConfig, *, now: dt.datetime) -> None:
        self.renderer, self.config, self.now = renderer, config, now
        self.people: Directory | None = None
        self.readers: dict[str, _Reader] = {}
        self.views: dict[int, EventView] = {}

    def jobs(self, session: Session, claimed: Sequence[_Claimed]) -> list[Outgoing]:
        """An ``Outgoing`` for each claimed delivery, after loading what they need that is not loaded yet."""
        if self.people is None:
            self.people = Directory.load(session)
        items_of: dict[int, list[int]] = defaultdict(list)  # digest id -> event ids of its items
        digest_ids = [d.id for d in claimed if d.kind == DeliveryKind.DIGEST]
        if digest_ids:
            items = (
                select(DELIVERY.c.digest_id, DELIVERY.c.event_id)
                .where(DELIVERY.c.digest_id.in_(digest_ids)).order_by(DELIVERY.c.event_id)
            )
            for digest_id, event_id in session.execute(items):
                if event_id is not None:
                    items_of[digest_id].append(event_id)
        needed = {d.event_id for d in claimed if d.event_id is not None} | {e for ids in items_of.values() for e in ids}
        self._load_views(session, needed - set(self.views))
        self._load_readers(session, {d.recipient for d in claimed} - set(self.readers))
        jobs = []
        for d in claimed:
            reader = self.readers[d.recipient]
            if d.kind == DeliveryKind.DIGEST:
                views = [self.views[e] for e in items_of[d.id]]
                build = self._digest(d, reader, views, d.digest_day or self.now.date())
            elif d.kind == DeliveryKind.MESSAGE:
                build = self._message(d, reader)
            else:
                assert d.event_id is not None
                build = self._event(d, reader, self.views[d.event_id])
            jobs.append(Outgoing(d.id, d.email, build))
        return jobs

    def _load_views(self, session: Session, event_ids: set[int]) -> None:
        if not event_ids:
            return
        assert self.people is not None
        people = self.people
        events = list(session.exec(select(Event).where(col(Event.id).in_(event_ids))))
        wanted = {e.proposal_id for e in events}
        proposals = {p.id: p for p in session.exec(select(Proposal).where(col(Proposal.id).in_(wanted)))}
        actors = {e.actor for e in events} - set(self.readers)
        self._load_readers(session, actors)
        heads = frozenset(people.heads)
        for event in events:
            assert event.id is not None
            proposal = proposals[event.proposal_id]
            actor = self.readers.get(event.actor)
            self.views[event.id] = EventView(
                event=event,
                proposal=proposal,
                group_name=people.group_names.get(proposal.group, proposal.group),
                actor_name=actor.name if actor is not None else event.actor,
                chair=people.chairs.get(proposal.group, ""),
                heads=heads,
                presiding_heads=people.presiding_heads(event.at),
            )

    def _load_readers(self, session: Session, handles: set[str]) -> None:
        """Active members from the roster; deliveries planned before a member was deactivated still go out."""
        assert self.people is not None
        missing = handles - set(self.people.members)
        members = {h: self.people.members[h] for h in handles - missing}
        if missing:
            members |= {m.handle: m for m in session.exec(select(Member).where(col(Member.handle).in_(missing)))}
        self.readers |= {h: _Reader(m.handle, m.name, m.language, m.timezone, m.notify) for h, m in members.items()}

    def _envelope(self, rendered: Rendered, d: _Claimed, reader: _Reader, proposal_id: int | None = None) -> bytes:
        return build_mail(
            rendered, sender=self.config.sender, to_name=reader.name, to_email=d.email,
            message_id=d.message_id, date=self.now, proposal_id=proposal_id,
        )

    def _event(self, d: _Claimed, reader: _Reader, view: EventView) -> Callable[[], bytes]:
        def build() -> bytes:
            layout = self.renderer.event_layout(view, reader)
            return self._envelope(layout.fill(reader.name), d, reader, view.proposal.id)

        return build

    def _digest(self, d: _Claimed, reader: _Reader, views: list[EventView], day: dt.date) -> Callable[[], bytes]:
        def build() -> bytes:
            return self._envelope(self.renderer.digest_message(reader, views, day=day), d, reader)

        return build

    def _message(self, d: _Claimed, reader: _Reader) -> Callable[[], bytes]:
        """A mail rendered when it was queued (a sign-in link)."""
        stored = dict(d.message or {})

        def build() -> bytes:
            if not stored:
                raise ValueError("the stored message was wiped")
            rendered = Rendered(str(stored["subject"]), str(stored["text"]), str(stored["html"]), str(stored["language"]))
            return self._envelope(rendered, d, reader)

        return build


class _Writer:
    """Writes outcomes on one database connection kept for the run: a short transaction per group of outcomes.

    The statements of the outcomes are compiled once for the engine's dialect and run on the driver's cursor with
    their parameters bound here (``models.db.DriverStatement``): the write costs the database's work, not SQLAlchemy's.
    """

    def __init__(self, engine: Engine, *, now: dt.datetime, policy: RetryPolicy, report: SendReport) -> None:
        self.engine, self.now, self.policy, self.report = engine, now, policy, report
        self._conn: Connection | None = None

    def write(self, group: Sequence[tuple[_Claimed, Outcome]]) -> None:
        """Record ``group`` in one transaction and count it in the report."""
        if self._conn is None:
            self._conn = self.engine.connect()
        conn = self._conn
        rows, settled = _rows(group, now=self.now, policy=self.policy, report=self.report)
        if not settled:  # the common case: the driver's transaction, without SQLAlchemy's bookkeeping around it
            self._write_rows(conn, rows)
            return
        with conn.begin():
            for keys, same in rows.items():
                self._statement(keys, conn.dialect).executemany(conn, same)
            for status, ids in settled.items():  # a digest's items follow their digest
                values: dict[str, Any] = {"status": status}
                if status == DeliveryStatus.SENT:
                    values["sent_at"] = self.now
                conn.execute(update(DELIVERY).where(DELIVERY.c.digest_id.in_(ids)).values(**values))

    def _write_rows(self, conn: Connection, rows: dict[tuple[str, ...], list[dict[str, Any]]]) -> None:
        """Run the statements of ``rows`` and commit, on the driver's connection (which begins its transaction)."""
        for keys, same in rows.items():
            self._statement(keys, conn.dialect).executemany(conn, same)
        try:
            conn.connection.dbapi_connection.commit()  # type: ignore[union-attr]
        except BaseException:
            conn.invalidate()  # whatever the error, the connection is not used again (nor its transaction)
            raise

    def _statement(self, keys: tuple[str, ...], dialect: Dialect) -> DriverStatement:
        return DriverStatement.for_dialect(_update_by_id(keys), dialect)

    def close(self) -> None:
        """Give the connection back."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Recorder:
    """The ``OutcomeLog`` of one batch: outcomes queue up and are written together, on the event loop.

    A connection flushes before its next DATA, so each outcome is written before that connection's next
    mail can be accepted; whatever other connections queued meanwhile shares the transaction. The write is
    short (an UPDATE per group of rows): a worker thread would cost more in handing the interpreter back
    and forth than it saves. Once a write failed, every later flush raises: no connection sends on.
    """

    def __init__(self, writer: _Writer, claimed: Sequence[_Claimed]) -> None:
        self.writer = writer
        self.claimed = {d.id: d for d in claimed}
        self.recorded: set[int] = set()
        self._queue: list[tuple[_Claimed, Outcome]] = []
        self._added = 0  # tickets given
        self._written = 0
        self._failed: BaseException | None = None

    def add(self, key: int, outcome: Outcome) -> int:
        """Queue ``outcome``; its ticket (written once ``written`` reaches it)."""
        self._queue.append((self.claimed[key], outcome))
        self._added += 1
        return self._added

    @property
    def written(self) -> int:
        """The ticket of the last outcome written."""
        return self._written

    def flush(self) -> None:
        """Write every queued outcome in one transaction."""
        if self._failed is not None:
            raise self._failed
        group, self._queue = self._queue, []
        if not group:
            return
        try:
            self._write(group)
        except BaseException as exc:  # the database failed: any connection waiting for this write hears of it
            self._failed = exc
            raise
        self._written = self._added

    def rest(self, outcomes: dict[int, Outcome]) -> None:
        """Write what is still queued, then the outcomes of the mails not tried (the server went away)."""
        self.flush()
        left = [
            (d, outcomes.get(key, Outcome(ok=False, error="not tried", tried=False))) for key, d in self.claimed.items()
            if key not in self.recorded
        ]
        if left:
            self._write(left)

    def _write(self, group: list[tuple[_Claimed, Outcome]]) -> None:
        self.writer.write(group)
        self.recorded.update(d.id for d, _ in group)


# The columns each kind of outcome sets (``b_id``: the delivery's id in the WHERE clause).
_SENT: tuple[str, ...] = ("status", "sent_at", "last_error", "attempts", "b_id")
_SETTLED: tuple[str, ...] = ("status", "last_error", "attempts", "b_id")
_WAITING: tuple[str, ...] = ("status", "next_attempt_at", "last_error", "b_id")
_RETRY: tuple[str, ...] = ("status", "next_attempt_at", "last_error", "attempts", "b_id")


def _rows(
    group: Sequence[tuple[_Claimed, Outcome]], *, now: dt.datetime, policy: RetryPolicy, report: SendReport
) -> tuple[dict[tuple[str, ...], list[dict[str, Any]]], dict[str, list[int]]]:
    """The new values of each delivery in ``group`` by the columns they set (added up in ``report``), and the
    digests settled, by status."""
    rows: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    settled: dict[str, list[int]] = defaultdict(list)  # status -> digest ids
    for delivery, outcome in group:
        attempts = delivery.attempts + 1 if outcome.counts else delivery.attempts
        row: dict[str, Any]
        if outcome.ok:
            keys, row = _SENT, {"status": DeliveryStatus.SENT.value, "sent_at": now, "last_error": "", "attempts": attempts}
            report.sent += 1
        elif outcome.permanent:
            keys, row = _SETTLED, {"status": DeliveryStatus.DEAD.value, "last_error": outcome.error, "attempts": attempts}
            report.dead += 1
        elif not outcome.counts:  # the server was not reached: wait for it, however long it takes
            retry_at = now + policy.unreachable_wait if outcome.tried else now
            keys = _WAITING
            row = {"status": DeliveryStatus.PENDING.value, "next_attempt_at": retry_at, "last_error": outcome.error}
            report.retrying += 1
            report.unreachable += 1
        elif attempts >= policy.max_attempts:
            gave_up = _line(f"gave up after {attempts} attempts: {outcome.error}")
            keys, row = _SETTLED, {"status": DeliveryStatus.FAILED.value, "last_error": gave_up, "attempts": attempts}
            report.failed += 1
        else:
            retry_at = now + policy.delay(attempts)
            keys = _RETRY
            row = {
                "status": DeliveryStatus.PENDING.value, "next_attempt_at": retry_at, "last_error": outcome.error,
                "attempts": attempts,
            }
            report.retrying += 1
        row["b_id"] = delivery.id
        rows[keys].append(row)
        if delivery.kind == DeliveryKind.DIGEST and row["status"] != DeliveryStatus.PENDING:
            settled[row["status"]].append(delivery.id)
    return rows, settled


@functools.cache
def _update_by_id(keys: tuple[str, ...]) -> Update:
    """UPDATE delivery SET <keys> WHERE id = :b_id, for executemany (one statement object per set of keys)."""
    columns = [k for k in keys if k != "b_id"]
    return (
        update(DELIVERY)
        .where(DELIVERY.c.id == bindparam("b_id"))
        .values({k: bindparam(k, type_=DELIVERY.c[k].type) for k in columns})
    )


def _line(text: str) -> str:
    return text if len(text) <= 480 else text[:479] + "…"
