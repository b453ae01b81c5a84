"""An API write as one unit of database work: who calls, the write and its commit, in one synchronous call.

A write route hands ``write_unit`` the caller's credentials and a function of the session and the caller. The unit
runs it in a session of its own and commits; the route builds its answer afterwards, from what the function
returned, without the database.

Where the unit runs:

- on PostgreSQL, in one trip to a worker thread (every statement is a round trip over the network);
- on SQLite, on the event loop itself, when no other writer holds the database at that moment. SQLite takes one
  writer at a time anyway, and the trip to a worker thread and back costs more than the write: under load each
  hand-over waits for the other threads' turn at the interpreter. The loop must never wait for a writer, though:
  its writes there wait for nobody (``web.writelock.write_at_once``), and a write that would have to wait (another
  thread of this process, or another process, holds the database) fails at once. The unit is then rolled back, as
  if it had never run, and run again in a worker thread, which waits as every writer does.

The function must do everything in the session it is given and nothing that cannot be undone (no mail sent,
no file written): a unit may run twice, the first time rolled back.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.tokens import note_use, use_is_new
from web.deps import Caller, Credentials, caller_of, credentials, request_time
from web.state import WebState
from web.writelock import is_locked, write_at_once

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[Session, Caller, dt.datetime], T]


class _Busy(Exception):
    """Another writer held the database: the unit was rolled back and must run where it may wait."""


def _run(engine: Engine, creds: Credentials, now: dt.datetime, work: Work[T], *, at_once: bool) -> tuple[Caller, T]:
    """The unit in a new session, committed; with ``at_once``, ``_Busy`` (all of it rolled back) if a writer held
    the database."""
    with Session(engine, expire_on_commit=False) as db:
        try:
            if at_once:
                write_at_once(db.connection())
            caller, token = caller_of(db, creds, now=now)
            if token is not None and use_is_new(token, now):
                note_use(db, token, now)
            result = work(db, caller, now)
            db.commit()
        except BaseException as exc:
            db.rollback()
            if at_once and is_locked(exc):
                raise _Busy() from None
            raise
    return caller, result


async def write_unit(request: Request, work: Work[T]) -> tuple[Caller, T]:
    """Run ``work`` for the caller of ``request`` as one committed unit (see the module); the caller and its result.

    At most as many units hold a session at once as the pool keeps connections (``WebState.admission``).
    """
    state: WebState = request.app.state.web
    engine = state.runtime.engine
    now = request_time(request)
    creds = await credentials(request)
    async with state.admission:
        if engine.dialect.name == "sqlite":
            try:
                return _run(engine, creds, now, work, at_once=True)
            except _Busy:
                log.debug("%s %s: another writer held the database; done in a worker thread", request.method, request.url.path)
        return await run_in_threadpool(functools.partial(_run, engine, creds, now, work, at_once=False))
