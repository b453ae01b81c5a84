"""An API write as one unit of database work: who calls, the write and its commit, in one synchronous call.

A write route hands ``write_unit`` the work: a function of the session, the caller and the moment, which does the
write and returns what the answer needs. It may hand it a second function, the refusal, which answers a domain
error of the work, reading the database once nothing of the work is left in it. The unit finds the caller, runs
the work and commits; the route builds its answer afterwards, from what the work returned, without the database.

Where the unit runs:

- on PostgreSQL, in one trip to a worker thread (every statement is a round trip over the network);
- on SQLite, on the event loop itself, together with the units that arrived meanwhile (``GroupCommit``): SQLite
  takes one writer at a time anyway, and the trip to a worker thread and back costs more than the write (under
  load each hand-over waits for the other threads' turn at the interpreter). The loop must never wait for a
  writer, though: its writes there wait for nobody (``web.writelock.write_at_once``), and a write that would have
  to wait (another thread of this process, or another process, holds the database) fails at once. The units are
  then rolled back, as if they had never run, and each runs again by itself, in a worker thread if the database
  is still held, where it waits as every writer does.

The work must do everything in the session it is given and nothing that cannot be undone (no mail sent, no file
written, no commit or rollback of its own): a unit may run twice, the first time rolled back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.errors import ForumflowError
from models.tokens import note_use, use_is_new
from web.deps import Caller, Credentials, caller_of, credentials, request_time
from web.errors import ApiProblem, CsrfError, NotSignedInError
from web.state import WebState
from web.writelock import is_locked, write_at_once

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[Session, Caller, dt.datetime], T]
# The answer to a domain error of the work: returned, or raised (an ApiProblem or a ForumflowError).
Refusal = Callable[[Session, Caller, dt.datetime, ForumflowError], BaseException]

# What a unit may end with having written nothing: the caller refused, or the work refused by the rules.
REFUSALS = (ForumflowError, ApiProblem, NotSignedInError, CsrfError)
# The most units one group commits: the write lock and the loop are held that long (about 0.2 ms a unit).
GROUP_MAX = 64
# The most turns of the loop a group waits for units still arriving (see GroupCommit._filled).
FILL_TURNS = 4


class _Busy(Exception):
    """Another writer held the database: the unit was rolled back and must run where it may wait."""


class _Refused(Exception):
    """The work raised a domain error; its caller is known, so the refusal can answer it."""

    def __init__(self, caller: Caller, error: ForumflowError) -> None:
        super().__init__(str(error))
        self.caller, self.error = caller, error


@dataclass(eq=False)
class _Unit(Generic[T]):
    """One unit: the caller's credentials, the moment, the work and its refusal."""

    creds: Credentials
    now: dt.datetime
    work: Work[T]
    refusal: Refusal | None

    def attempt(self, db: Session) -> tuple[Caller, T]:
        """The caller and the work in ``db`` (not committed); a token's use is noted once the work is done."""
        caller, token = caller_of(db, self.creds, now=self.now)
        try:
            result = self.work(db, caller, self.now)
        except ForumflowError as exc:
            raise _Refused(caller, exc) from exc
        if token is not None and use_is_new(token, self.now):
            note_use(db, token, self.now)
        return caller, result

    def answer(self, db: Session, refused: _Refused) -> BaseException:
        """What answers the work's domain error, read in ``db`` (which must hold nothing of the work)."""
        if self.refusal is None:
            return refused.error
        try:
            return self.refusal(db, refused.caller, self.now, refused.error)
        except REFUSALS as answer:
            return answer


def _run(engine: Engine, unit: _Unit[T], *, at_once: bool) -> tuple[Caller, T]:
    """The unit alone in a new session, committed; with ``at_once``, ``_Busy`` (all of it rolled back) if a writer
    held the database."""
    with Session(engine, expire_on_commit=False) as db:
        try:
            if at_once:
                write_at_once(db.connection())
            outcome = unit.attempt(db)
            db.commit()
        except _Refused as refused:
            db.rollback()
            answer = unit.answer(db, refused)
            db.rollback()
            raise answer from None
        except BaseException as exc:
            db.rollback()
            if at_once and is_locked(exc):
                raise _Busy() from None
            raise
    return outcome


async def _alone(state: WebState, unit: _Unit[T]) -> tuple[Caller, T]:
    """The unit by itself: on the loop on SQLite if no other writer holds the database, else in a worker thread."""
    engine = state.runtime.engine
    async with state.admission:
        if engine.dialect.name == "sqlite":
            try:
                return _run(engine, unit, at_once=True)
            except _Busy:
                log.debug("another writer held the database; the API write is done in a worker thread")
        return await run_in_threadpool(functools.partial(_run, engine, unit, at_once=False))


_ALONE: Any = object()  # the outcome of a unit its group did not commit: it runs again by itself


@dataclass(eq=False)
class _Waiting(Generic[T]):
    """A unit waiting for its group, and where its outcome goes."""

    unit: _Unit[T]
    outcome: asyncio.Future[tuple[Caller, T]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit:
    """The SQLite writes of one app on one event loop, committed in groups (group commit).

    A unit waits for the loop's next turn, and for a few more while other units keep arriving (``_filled``). Every
    unit that has arrived by then (up to ``GROUP_MAX``) runs in one transaction, one after the other in the order
    they came, and one commit ends them all. Under load that spares each unit most of its own transaction: the
    session, the connection's set-up, BEGIN and COMMIT, and the pages of the write-ahead log that several units
    change. A lone unit is a group of one, one turn of the loop later.

    Each unit sees the database as the units before it in the group left it, exactly as if they had committed one
    by one. A unit refused (its caller, or its work by the rules) must have written nothing, and SQLite's count of
    changed rows and the session tell whether it did. It gets its refusal and the group goes on. Anything else
    before the commit rolls the whole group back: a unit that raised after writing, an unexpected error, or a busy
    database. Every unit of that group then runs again by itself (``_alone``), so each gets the outcome it would
    have had alone. A commit that fails is not tried again (it may have committed): its units get the error.
    No outcome is given before the commit.
    """

    def __init__(self, state: WebState) -> None:
        self.state = state
        self.waiting: list[_Waiting[Any]] = []
        self.task: asyncio.Task[None] | None = None  # the drain running (kept: the loop holds tasks only weakly)

    async def submit(self, unit: _Unit[T]) -> tuple[Caller, T]:
        """Run the unit in the next group; its caller and result, or what it raised."""
        waiting: _Waiting[T] = _Waiting(unit)
        self.waiting.append(waiting)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._drain())
        outcome = await waiting.outcome
        if outcome is _ALONE:
            return await _alone(self.state, unit)
        return outcome

    async def _drain(self) -> None:
        """Commit the waiting units, group after group, until none waits."""
        try:
            async with self.state.admission:
                while self.waiting:
                    await self._filled()
                    group = [w for w in self.waiting[:GROUP_MAX] if not w.outcome.done()]
                    del self.waiting[:GROUP_MAX]
                    if group:
                        self._commit(group)  # its answers go out at the next turn (in _filled, if more wait)
        finally:
            self.task = None
            _settle(self.waiting, _ALONE)  # only if the drain itself was cancelled: nobody is left waiting for ever
            self.waiting = []

    async def _filled(self) -> None:
        """Wait while units keep arriving: a turn of the loop at a time, as long as the last turn brought new ones
        (at most ``FILL_TURNS`` turns, or until a group is full). Requests already read from the network then join
        the group instead of the next one; a lone unit waits one turn."""
        seen = 0
        for _ in range(FILL_TURNS):
            if len(self.waiting) == seen or len(self.waiting) >= GROUP_MAX:
                return
            seen = len(self.waiting)
            await asyncio.sleep(0)

    def _commit(self, group: list[_Waiting[Any]]) -> None:
        """Run the group in one transaction and commit it; then every unit's outcome is set."""
        outcomes: list[tuple[_Waiting[Any], Any, BaseException | None]] = []
        with Session(self.state.runtime.engine, expire_on_commit=False) as db:
            try:
                conn = db.connection()
                write_at_once(conn)
                driver: Any = conn.connection.dbapi_connection
                for waiting in group:
                    changes = driver.total_changes
                    try:
                        outcomes.append((waiting, waiting.unit.attempt(db), None))
                        continue
                    except _Refused as refused:
                        _wrote_nothing(db, driver, changes, refused)
                        error = waiting.unit.answer(db, refused)
                    except REFUSALS as exc:
                        error = exc
                    _wrote_nothing(db, driver, changes, error)
                    outcomes.append((waiting, None, error))
            except Exception as exc:
                db.rollback()
                log.log(logging.DEBUG if is_locked(exc) else logging.WARNING,
                        "a group of %d API writes was rolled back (%s); each runs again by itself", len(group), exc)
                _settle(group, _ALONE)
                return
            except BaseException:
                db.rollback()
                _settle(group, _ALONE)
                raise
            try:
                db.commit()
            except Exception as exc:
                log.error("the commit of a group of %d API writes failed: %s", len(group), exc)
                _settle(group, exc)
                return
        for waiting, result, refusal in outcomes:  # a request gone meanwhile: what it wrote stays, as it would alone
            _give(waiting, result if refusal is None else refusal)


def _wrote_nothing(db: Session, driver: Any, changes: int, refused: BaseException) -> None:
    """Raise if the session or SQLite changed anything since ``changes`` (a refused unit that wrote spoils its
    group); else nothing."""
    if driver.total_changes != changes or db.new or db.dirty or db.deleted:
        raise RuntimeError(f"a refused API write left changes behind ({refused})")


def _give(waiting: _Waiting[Any], outcome: Any) -> None:
    """Give a unit still waiting its outcome (a result, or an exception to raise); nothing if it waits no more."""
    if waiting.outcome.done():
        return
    if isinstance(outcome, BaseException):
        waiting.outcome.set_exception(outcome)
    else:
        waiting.outcome.set_result(outcome)


def _settle(group: list[_Waiting[Any]], outcome: Any) -> None:
    """Give every unit of the group still waiting the same outcome."""
    for waiting in group:
        _give(waiting, outcome)


def group_commit(request: Request) -> GroupCommit:
    """The group commit of this app on the running event loop (one per loop: a group's units wait on futures of
    its loop; several loops, as tests' clients run, each have theirs and meet at the write lock)."""
    groups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommit] | None = getattr(
        request.app.state, "group_commits", None)
    if groups is None:
        groups = request.app.state.group_commits = weakref.WeakKeyDictionary()
    loop = asyncio.get_running_loop()
    group = groups.get(loop)
    if group is None:
        group = groups.setdefault(loop, GroupCommit(request.app.state.web))
    return group


async def write_unit(request: Request, work: Work[T], refusal: Refusal | None = None) -> tuple[Caller, T]:
    """Run ``work`` for the caller of ``request`` as one committed unit (see the module); the caller and its result.

    ``refusal`` answers a domain error of the work (see ``Refusal``). At most as many units hold a session at once
    as the pool keeps connections (``WebState.admission``).
    """
    state: WebState = request.app.state.web
    unit = _Unit(await credentials(request), request_time(request), work, refusal)
    if state.runtime.engine.dialect.name == "sqlite":
        return await group_commit(request).submit(unit)
    return await _alone(state, unit)
