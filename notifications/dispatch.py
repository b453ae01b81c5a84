"""Sending the outbox: claim due deliveries, render them, send them over SMTP, record each outcome.

A run claims a batch in one short transaction (a conditional UPDATE ... RETURNING, so two dispatchers
never take the same row) and leases it: if the process dies, the rows are due again when the lease ends.
Each outcome is written once the server has answered, at the latest before that connection sends its
next DATA (outcomes queued meanwhile by other connections share the transaction). A crash therefore
repeats at most the mails in flight, one per connection; their Message-ID is the same on the resend, so
a receiver can tell.

Only the server's answers about a mail use up its attempts (4xx: retry with backoff; 5xx: dead). When
the server cannot be reached, the mail waits for it without losing an attempt, however long the outage.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, bindparam, func, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.dml import Update
from sqlmodel import Session, col, select

from config.settings import Settings
from models.clock import check_run_time
from models.db import session_scope
from models.lifecycle import Lifecycle, utc
from models.outbox import Delivery, DeliveryKind, DeliveryStatus, wipe_messages
from models.tables import Event, Member, Proposal
from notifications.mail import build_mail, new_message_id
from notifications.planning import Directory, plan_deliveries
from notifications.render import EventView, Rendered, Renderer, member_zone
from notifications.smtp import Outcome, Outgoing, SmtpConfig, SmtpPool

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
    report = _run_async(_send(engine, config, renderer, now=now, limit=limit, policy=policy))
    report.digests = digests
    with session_scope(engine) as session:
        wipe_messages(session, now=now)  # sign-in links just sent leave the outbox
    log.info(
        "sent %d of %d (%d to retry, %d of them for an unreachable server; %d failed, %d dead, %d digests bundled)",
        report.sent, report.attempted, report.retrying, report.unreachable, report.failed, report.dead, digests,
    )
    return report


def _run_async(coro: Coroutine[Any, Any, SendReport]) -> SendReport:
    """Run ``coro`` to the end; from inside a running event loop (an async caller), in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="forumflow-send") as pool:
        return pool.submit(asyncio.run, coro).result()


def dispatch_once(engine: Engine, settings: Settings, lifecycle: Lifecycle, *, now: dt.datetime) -> DispatchReport:
    """Plan deliveries for new events (own transaction), then send what is due; refuses a ``now`` before the newest event."""
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
async def _send(
    engine: Engine, config: SmtpConfig, renderer: Renderer, *, now: dt.datetime, limit: int | None, policy: RetryPolicy,
) -> SendReport:
    report = SendReport()
    async with SmtpPool(config) as pool:
        while limit is None or report.attempted < limit:
            size = BATCH if limit is None else min(BATCH, limit - report.attempted)
            with session_scope(engine) as session:
                claimed = _claim(session, now=now, size=size, policy=policy, domain=config.sender.domain)
                jobs = _jobs(session, renderer, config, claimed, now=now) if claimed else []
            if not claimed:
                break
            report.attempted += len(claimed)
            recorder = _Recorder(engine, claimed, now=now, policy=policy, report=report)
            try:
                outcomes = await pool.send(jobs, recorder)
                recorder.rest(outcomes)  # the mails not tried: the server went away
            finally:
                recorder.close()
            if pool.down:
                report.errors.append(pool.down)
                break  # the server is unreachable: leave the rest for the next run
    return report


def _claim(session: Session, *, now: dt.datetime, size: int, policy: RetryPolicy, domain: str) -> list[Delivery]:
    """Take up to ``size`` due deliveries and lease them, in one conditional UPDATE (no attempt counted yet)."""
    due = (
        col(Delivery.kind).in_([DeliveryKind.EVENT, DeliveryKind.DIGEST, DeliveryKind.MESSAGE]),
        col(Delivery.status) == DeliveryStatus.PENDING,
        col(Delivery.next_attempt_at) <= now,
    )
    candidates = (
        select(Delivery.id).where(*due).order_by(col(Delivery.next_attempt_at), col(Delivery.id)).limit(size)
    ).scalar_subquery()
    ids = list(
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(candidates), *due)
            .values(next_attempt_at=now + policy.lease)
            .returning(col(Delivery.id))
            .execution_options(synchronize_session=False)
        ).scalars()
    )
    if not ids:
        return []
    rows = list(session.exec(select(Delivery).where(col(Delivery.id).in_(ids)).order_by(col(Delivery.id))))
    fresh: list[dict[str, Any]] = []
    for row in rows:
        if row.message_id is None:
            row.message_id = new_message_id(domain)
            fresh.append({"id": row.id, "message_id": row.message_id})
    if fresh:
        session.execute(update(Delivery), fresh)
    return rows


class _Recorder:
    """The ``OutcomeLog`` of one batch: outcomes queue up and are written together, on the event loop.

    A connection flushes before its next DATA, so each outcome is written before that connection's next
    mail can be accepted; whatever other connections queued meanwhile shares the transaction. The write is
    short (an UPDATE per group of rows): a worker thread would cost more in handing the interpreter back
    and forth than it saves.
    """

    def __init__(
        self, engine: Engine, claimed: Sequence[Delivery], *, now: dt.datetime, policy: RetryPolicy, report: SendReport
    ) -> None:
        self.engine, self.now, self.policy, self.report = engine, now, policy, report
        self.claimed = {d.id: d for d in claimed if d.id is not None}
        self.recorded: set[int] = set()
        self._queue: list[tuple[Delivery, Outcome, asyncio.Future[None]]] = []
        self._conn: Connection | None = None  # one connection for the run's many small writes

    def add(self, key: int, outcome: Outcome) -> asyncio.Future[None]:
        """Queue ``outcome``; the future is done once it is written."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((self.claimed[key], outcome, done))
        return done

    def flush(self) -> None:
        """Write every queued outcome in one transaction."""
        group, self._queue = self._queue, []
        if not group:
            return
        try:
            self._write([(d, o) for d, o, _ in group])
        except BaseException as exc:  # the database failed: every connection waiting on this write hears of it
            for *_, done in group:
                done.set_exception(exc)
            raise
        for *_, done in group:
            done.set_result(None)

    def rest(self, outcomes: dict[int, Outcome]) -> None:
        """Write what is still queued, then the outcomes of the mails not tried (the server went away)."""
        self.flush()
        left = [
            (d, outcomes.get(key, Outcome(ok=False, error="not tried", tried=False))) for key, d in self.claimed.items()
            if key not in self.recorded
        ]
        if left:
            self._write(left)

    def close(self) -> None:
        """Give the connection back."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _write(self, group: list[tuple[Delivery, Outcome]]) -> None:
        if self._conn is None:
            self._conn = self.engine.connect()
        with self._conn.begin():
            _record(self._conn, group, now=self.now, policy=self.policy, report=self.report)
        self.recorded.update(d.id for d, _ in group if d.id is not None)


def _jobs(
    session: Session, renderer: Renderer, config: SmtpConfig, claimed: Sequence[Delivery], *, now: dt.datetime
) -> list[Outgoing]:
    """Load what the claimed deliveries need and wrap each in a job that renders it when sent."""
    people = Directory.load(session)
    items_of: dict[int, list[Delivery]] = defaultdict(list)
    digest_ids = [d.id for d in claimed if d.kind == DeliveryKind.DIGEST]
    if digest_ids:
        items = select(Delivery).where(col(Delivery.digest_id).in_(digest_ids)).order_by(col(Delivery.event_id))
        for item in session.exec(items):
            assert item.digest_id is not None
            items_of[item.digest_id].append(item)
    event_ids = {d.event_id for d in claimed if d.event_id is not None} | {
        i.event_id for items in items_of.values() for i in items if i.event_id is not None
    }
    events = {e.id: e for e in session.exec(select(Event).where(col(Event.id).in_(event_ids)))}
    proposals = {
        p.id: p for p in session.exec(select(Proposal).where(col(Proposal.id).in_({e.proposal_id for e in events.values()})))
    }
    recipients = {d.recipient for d in claimed} - set(people.members)
    members = dict(people.members)
    if recipients:  # deliveries planned before a member was deactivated still go out
        members |= {m.handle: m for m in session.exec(select(Member).where(col(Member.handle).in_(recipients)))}

    def view(event_id: int) -> EventView:
        event = events[event_id]
        proposal = proposals[event.proposal_id]
        actor = members.get(event.actor) or session.get(Member, event.actor)
        return EventView(
            event=event,
            proposal=proposal,
            group_name=people.group_names.get(proposal.group, proposal.group),
            actor_name=actor.name if actor is not None else event.actor,
            chair=people.chairs.get(proposal.group, ""),
            heads=frozenset(people.heads),
            presiding_heads=people.presiding_heads(event.at),
        )

    jobs = []
    for d in claimed:
        member = members[d.recipient]
        assert d.id is not None
        if d.kind == DeliveryKind.DIGEST:
            views = [view(i.event_id) for i in items_of[d.id] if i.event_id is not None]
            build = _digest_builder(renderer, config, d, member, views, d.digest_day or now.date(), now)
        elif d.kind == DeliveryKind.MESSAGE:
            build = _message_builder(config, d, member, now)
        else:
            assert d.event_id is not None
            build = _event_builder(renderer, config, d, member, view(d.event_id), now)
        jobs.append(Outgoing(d.id, d.email, build))
    return jobs


def _event_builder(
    renderer: Renderer, config: SmtpConfig, delivery: Delivery, member: Member, view: EventView, now: dt.datetime
) -> Callable[[], bytes]:
    def build() -> bytes:
        rendered = renderer.event_message(view, member)
        return build_mail(
            rendered, sender=config.sender, to_name=member.name, to_email=delivery.email,
            message_id=str(delivery.message_id), date=now, proposal_id=view.proposal.id,
        )

    return build


def _digest_builder(
    renderer: Renderer, config: SmtpConfig, delivery: Delivery, member: Member, views: list[EventView], day: dt.date,
    now: dt.datetime,
) -> Callable[[], bytes]:
    def build() -> bytes:
        rendered = renderer.digest_message(member, views, day=day)
        return build_mail(
            rendered, sender=config.sender, to_name=member.name, to_email=delivery.email,
            message_id=str(delivery.message_id), date=now,
        )

    return build


def _message_builder(config: SmtpConfig, delivery: Delivery, member: Member, now: dt.datetime) -> Callable[[], bytes]:
    """A mail rendered when it was queued (a sign-in link)."""
    stored = dict(delivery.message or {})

    def build() -> bytes:
        if not stored:
            raise ValueError("the stored message was wiped")
        rendered = Rendered(str(stored["subject"]), str(stored["text"]), str(stored["html"]), str(stored["language"]))
        return build_mail(
            rendered, sender=config.sender, to_name=member.name, to_email=delivery.email,
            message_id=str(delivery.message_id), date=now,
        )

    return build


def _record(
    conn: Connection, group: Sequence[tuple[Delivery, Outcome]], *, now: dt.datetime, policy: RetryPolicy, report: SendReport
) -> None:
    """Write each outcome into its delivery and add it to ``report``; a digest's items follow their digest."""
    rows: list[dict[str, Any]] = []
    settled: dict[str, list[int]] = defaultdict(list)  # status -> digest ids
    for delivery, outcome in group:
        assert delivery.id is not None
        attempts = delivery.attempts + 1 if outcome.counts else delivery.attempts
        row: dict[str, Any]
        if outcome.ok:
            row = {"status": DeliveryStatus.SENT.value, "sent_at": now, "last_error": "", "attempts": attempts}
            report.sent += 1
        elif outcome.permanent:
            row = {"status": DeliveryStatus.DEAD.value, "last_error": outcome.error, "attempts": attempts}
            report.dead += 1
        elif not outcome.counts:  # the server was not reached: wait for it, however long it takes
            retry_at = now + policy.unreachable_wait if outcome.tried else now
            row = {"status": DeliveryStatus.PENDING.value, "next_attempt_at": retry_at, "last_error": outcome.error}
            report.retrying += 1
            report.unreachable += 1
        elif attempts >= policy.max_attempts:
            gave_up = _line(f"gave up after {attempts} attempts: {outcome.error}")
            row = {"status": DeliveryStatus.FAILED.value, "last_error": gave_up, "attempts": attempts}
            report.failed += 1
        else:
            retry_at = now + policy.delay(attempts)
            row = {
                "status": DeliveryStatus.PENDING.value, "next_attempt_at": retry_at, "last_error": outcome.error,
                "attempts": attempts,
            }
            report.retrying += 1
        rows.append({"b_id": delivery.id, **row})
        if delivery.kind == DeliveryKind.DIGEST and row["status"] != DeliveryStatus.PENDING:
            settled[row["status"]].append(delivery.id)
    # One executemany per set of columns: Core statements, cached once compiled (this runs once per answer).
    for keys, same in _by_keys(rows).items():
        conn.execute(_update_by_id(keys), same)
        log.debug("recorded %d outcomes (%s)", len(same), ", ".join(keys))
    for status, ids in settled.items():
        values: dict[str, Any] = {"status": status}
        if status == DeliveryStatus.SENT:
            values["sent_at"] = now
        conn.execute(update(DELIVERY).where(DELIVERY.c.digest_id.in_(ids)).values(**values))


def _update_by_id(keys: tuple[str, ...]) -> Update:
    """UPDATE delivery SET <keys> WHERE id = :b_id, for executemany."""
    columns = [k for k in keys if k != "b_id"]
    return (
        update(DELIVERY)
        .where(DELIVERY.c.id == bindparam("b_id"))
        .values({k: bindparam(k, type_=DELIVERY.c[k].type) for k in columns})
    )


def _line(text: str) -> str:
    return text if len(text) <= 480 else text[:479] + "…"


def _by_keys(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(sorted(row))].append(row)
    return groups
