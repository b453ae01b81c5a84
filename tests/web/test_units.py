"""API writes as one unit (web.units): on SQLite on the event loop, unless another writer holds the database at that
moment; then, and always on PostgreSQL, in a worker thread. Either way exactly once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import Lifecycle
from models.db import SQLITE_BUSY_TIMEOUT_MS
from models.tables import Proposal
from tests.factories import AUTHOR, make_proposal
from tests.web.api_support import API, bearer, etag, token_for

WORKER = "AnyIO worker thread"  # anyio's name for the threads of run_in_threadpool


@contextmanager
def threads_of(engine: Engine) -> Iterator[dict[str, list[str]]]:
    """The names of the threads that run statements and commits on ``engine`` meanwhile."""
    seen: dict[str, list[str]] = {"statements": [], "commits": []}

    def statement(*args: object) -> None:
        seen["statements"].append(threading.current_thread().name)

    def commit(*args: object) -> None:
        seen["commits"].append(threading.current_thread().name)

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)


def _draft(client: TestClient, forum: Engine, lifecycle: Lifecycle) -> tuple[int, str, dict[str, str]]:
    """A new draft: its id, the URL that submits it, and its author's headers for that (token and If-Match)."""
    pid = make_proposal(forum, lifecycle)
    author = bearer(token_for(forum, AUTHOR))
    return pid, f"{API}/proposals/{pid}/actions/submit", author | {"If-Match": etag(client, pid, author)}


def _submitted_once(forum: Engine, pid: int) -> None:
    with Session(forum) as s:
        p = s.get(Proposal, pid)
        assert p is not None and p.state == "in_review" and p.version == 2
        submits = s.exec(text("SELECT count(*) FROM event WHERE proposal_id = :p AND action = 'submit'"),  # type: ignore[call-overload]
                         params={"p": pid}).one()[0]
        assert submits == 1


def test_an_action_is_one_unit_on_the_event_loop_on_sqlite_and_in_a_worker_thread_on_postgresql(
    client: TestClient, forum: Engine, lifecycle: Lifecycle,
) -> None:
    pid, url, headers = _draft(client, forum, lifecycle)
    with threads_of(forum) as seen:
        r = client.post(url, headers=headers)
    assert r.status_code == 200, r.text
    _submitted_once(forum, pid)
    # Who calls, the action and its commit: one thread, and one commit.
    (thread,) = set(seen["statements"])
    assert seen["commits"] == [thread]
    assert (thread == WORKER) == (forum.dialect.name != "sqlite")


@pytest.fixture
def sqlite_only(forum: Engine) -> Engine:
    if forum.dialect.name != "sqlite":
        pytest.skip("the unit meets SQLite's one writer at a time only on SQLite")
    return forum


def test_a_writer_of_this_process_sends_the_unit_to_a_worker_thread_where_it_waits_its_turn(
    client: TestClient, sqlite_only: Engine, lifecycle: Lifecycle,
) -> None:
    forum = sqlite_only
    pid, url, headers = _draft(client, forum, lifecycle)
    holding, done = threading.Event(), threading.Event()

    def writer() -> None:  # another request's write, in progress: it holds the process's write lock for a while
        with Session(forum) as s:
            s.exec(text("UPDATE member SET name = name WHERE handle = :h"), params={"h": AUTHOR})  # type: ignore[call-overload]
            holding.set()
            time.sleep(0.5)
            s.commit()
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(5)
    with threads_of(forum) as seen:
        r = client.post(url, headers=headers)
    thread.join()
    assert r.status_code == 200, r.text
    assert done.is_set()
    assert seen["commits"][-1] == WORKER  # tried on the loop, rolled back at once, done in a worker thread
    _submitted_once(forum, pid)


def test_another_process_holding_sqlite_sends_the_unit_to_a_worker_thread_and_the_busy_timeout_comes_back(
    client: TestClient, sqlite_only: Engine, lifecycle: Lifecycle,
) -> None:
    forum = sqlite_only
    pid, url, headers = _draft(client, forum, lifecycle)
    holder = (  # another process writing: it holds SQLite's write lock for a second
        "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN IMMEDIATE');"
        " print('held', flush=True); time.sleep(1.0); c.execute('COMMIT')"
    )
    other = subprocess.Popen([sys.executable, "-c", holder, str(forum.url.database)], stdout=subprocess.PIPE, text=True)
    assert other.stdout is not None and other.stdout.readline().strip() == "held"
    started = time.monotonic()
    with threads_of(forum) as seen:
        r = client.post(url, headers=headers)
    waited = time.monotonic() - started
    assert other.wait(10) == 0
    assert r.status_code == 200, r.text
    assert waited >= 0.5  # it waited for the other writer (in a worker thread), and did not fail
    assert seen["commits"][-1] == WORKER
    _submitted_once(forum, pid)
    # Every pooled connection waits for other writers again as the engine set it up.
    with forum.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
    with forum.connect() as first, forum.connect() as second:
        for conn in (first, second):
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
