"""One writer at a time per SQLite database inside this process, so writers queue on a lock instead of sleeping.

SQLite lets one transaction write at a time. Two threads of the web app that write at once meet in SQLite's busy
handler: the second one sleeps (1, 2, 5, 10 ... 100 ms, again and again) until the first commits, and under load
those sleeps add up to seconds. ``serialise_writes`` puts an in-process lock in front of that: a connection takes it
at its first writing statement (``INSERT``/``UPDATE``/``DELETE``/``REPLACE``, DDL, ``BEGIN IMMEDIATE``) and gives it
back once its transaction has ended (commit or rollback). The next writer of this process then starts the moment the
previous one committed, and never sleeps in the busy handler because of it.

Readers never take the lock (in WAL mode they do not block writers, nor writers them). Other processes (the CLI,
the flows, other workers) still meet at SQLite's own lock and busy timeout, exactly as before. A writer that cannot
have the lock within the busy timeout gets the same error SQLite gives then ("database is locked").
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from models.db import SQLITE_BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

# As long as the engine's PRAGMA busy_timeout (models.db): a writer waits for the lock no longer than for SQLite's.
WAIT_SECONDS = SQLITE_BUSY_TIMEOUT_MS / 1000
_HELD = "forumflow_write_lock"
_AT_ONCE = "forumflow_write_at_once"
LOCKED = "database is locked"  # what SQLite says when a writer is busy, and what this lock says too
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "BEGIN")
_installed: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_installing = threading.Lock()


def _writes(statement: str, context: Any) -> bool:
    """Whether the statement starts (or is part of) a writing transaction."""
    if context is not None and (context.isinsert or context.isupdate or context.isdelete):
        return True
    return statement.lstrip()[:8].upper().startswith(_WRITES)


def serialise_writes(engine: Engine) -> threading.Lock | None:
    """Install the write lock on an SQLite engine (once; later calls return the same lock); None for other databases."""
    if engine.dialect.name != "sqlite":
        return None
    with _installing:
        lock = _installed.get(engine)
        if lock is not None:
            return lock
        lock = _installed[engine] = threading.Lock()

    def release(info: dict[str, Any]) -> None:
        if info.pop(_HELD, False):
            lock.release()

    @event.listens_for(engine, "before_cursor_execute")
    def take(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        info = conn.info
        if info.get(_HELD) or not _writes(statement, context):
            return
        dbapi = conn.connection.dbapi_connection
        if getattr(dbapi, "in_transaction", False):  # a transaction begun before the lock existed: leave it be
            return
        got = lock.acquire(blocking=False) if info.get(_AT_ONCE) else lock.acquire(timeout=WAIT_SECONDS)
        if not got:
            raise sqlite3.OperationalError(LOCKED)
        info[_HELD] = True

    def ended(name: str) -> Any:
        # SQLAlchemy calls these just before the driver's commit or rollback: end the transaction here first, so
        # the next writer starts on a committed database (the driver's own call then finds nothing to end).
        def end(conn: Connection) -> None:
            info = conn.info
            if not info.get(_HELD):
                return
            try:
                getattr(conn.connection.dbapi_connection, name)()
            except Exception:
                if name == "commit":
                    raise
                # A failed rollback: SQLAlchemy's own call right after this one meets the error again and reports it.
            finally:
                release(info)

        return end

    event.listen(engine, "commit", ended("commit"))
    event.listen(engine, "rollback", ended("rollback"))

    # Safety nets: a connection given back to the pool, invalidated or closed holds no transaction any more.
    @event.listens_for(engine, "checkin")
    def checked_in(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            release(record.info)
            if record.info.pop(_AT_ONCE, False) and dbapi_connection is not None:
                dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    @event.listens_for(engine, "invalidate")
    def invalidated(dbapi_connection: Any, record: Any, exception: BaseException | None) -> None:
        release(record.info)

    log.debug("SQLite writers of this process serialised on %s", engine.url)
    return lock


def write_at_once(conn: Connection) -> None:
    """Until ``conn`` goes back to the pool, its writes wait for nobody: neither for this process's lock nor for
    SQLite's (busy timeout 0). A write that would have to wait fails at once with "database is locked" instead, and
    the caller can go and wait elsewhere (in a worker thread): for work on the event loop, which must never wait.

    The busy timeout is set back when the connection is checked in.
    """
    conn.info[_AT_ONCE] = True
    conn.connection.dbapi_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` (a driver error, or SQLAlchemy's wrapping one) says a writer was busy."""
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, sqlite3.OperationalError) and LOCKED in str(orig)
