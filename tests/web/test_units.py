"""API writes as one unit (web.units): on SQLite on the event loop, committed together with the units that arrive
meanwhile, unless another writer holds the database at that moment; then, and always on PostgreSQL, in a worker
thread. Either way exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import Lifecycle
from models.db import SQLITE_BUSY_TIMEOUT_MS
from models.errors import NotAllowedError
from models.tables import Member, Proposal
from tests.factories import AUTHOR, ONE_HEAD_PER_STATE, T0, load, make_proposal
from tests.web.api_support import API, assert_problem, bearer, etag, token_for
from tests.web.conftest import BASE
from web import units
from web.deps import Credentials

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


def _holding(forum: Engine, *, seconds: float) -> subprocess.Popen[str]:
    """Another process writing: it holds SQLite's write lock for ``seconds`` (returned once it holds it)."""
    holder = (
        "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN IMMEDIATE');"
        " print('held', flush=True); time.sleep(float(sys.argv[2])); c.execute('COMMIT')"
    )
    other = subprocess.Popen([sys.executable, "-c", holder, str(forum.url.database), str(seconds)],
                             stdout=subprocess.PIPE, text=True)
    assert other.stdout is not None and other.stdout.readline().strip() == "held"
    return other


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
    other = _holding(forum, seconds=1.0)
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


# ---------------------------------------------------------------------- group commit (SQLite)
async def _at_once(app: FastAPI, requests: list[tuple[str, dict[str, str], dict[str, Any] | None]]) -> list[httpx.Response]:
    """The requests (URL, headers, JSON body), POSTed together on one event loop, as a server's clients send them."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        return list(await asyncio.gather(*(client.post(url, headers=h, json=body) for url, h, body in requests)))


def _endorsement(client: TestClient, forum: Engine, pid: int, head: str) -> tuple[str, dict[str, str], None]:
    headers = bearer(token_for(forum, head))
    return f"{API}/proposals/{pid}/actions/endorse", headers | {"If-Match": etag(client, pid, headers)}, None


def test_writes_that_arrive_together_are_committed_together_each_with_its_own_answer(
    client: TestClient, app: FastAPI, sqlite_only: Engine, lifecycle: Lifecycle,
) -> None:
    forum = sqlite_only
    pids = [make_proposal(forum, lifecycle, state="reviewed") for _ in range(3)]
    requests = [_endorsement(client, forum, pid, head) for pid, head in zip(pids, ONE_HEAD_PER_STATE, strict=False)]
    with threads_of(forum) as seen:
        answers = asyncio.run(_at_once(app, requests))
    assert [r.status_code for r in answers] == [200, 200, 200], [r.text for r in answers]
    assert len(seen["commits"]) == 1 and seen["commits"] != [WORKER]  # one commit for the three, on the loop
    for pid, head, r in zip(pids, ONE_HEAD_PER_STATE, answers, strict=False):
        assert r.headers["etag"] == f'"{pid}-4"' and r.json()["events"][0]["actor"] == head
        assert load(forum, pid).version == 4


def test_a_unit_of_a_group_sees_the_writes_of_the_units_before_it(
    client: TestClient, app: FastAPI, sqlite_only: Engine, lifecycle: Lifecycle,
) -> None:
    forum = sqlite_only
    pid = make_proposal(forum, lifecycle, state="reviewed")
    first, second = (_endorsement(client, forum, pid, head) for head in ONE_HEAD_PER_STATE[:2])  # both read version 3
    with threads_of(forum) as seen:
        answers = asyncio.run(_at_once(app, [first, second]))
    assert len(seen["commits"]) == 1
    assert answers[0].status_code == 200 and answers[0].headers["etag"] == f'"{pid}-4"'
    stale = assert_problem(answers[1], 412)
    assert "version 4" in stale["detail"]
    p = load(forum, pid)
    assert p.version == 4


def test_a_refused_unit_leaves_its_group_as_it_was(
    client: TestClient, app: FastAPI, sqlite_only: Engine, lifecycle: Lifecycle,
) -> None:
    forum = sqlite_only
    reviewed, in_review = make_proposal(forum, lifecycle, state="reviewed"), make_proposal(forum, lifecycle, state="in_review")
    author = bearer(token_for(forum, AUTHOR))
    refused = (f"{API}/proposals/{in_review}/actions/reject", author | {"If-Match": etag(client, in_review, author)},
               {"comment": "No"})
    unknown = bearer("ffp_" + "x" * 43)
    requests = [
        _endorsement(client, forum, reviewed, ONE_HEAD_PER_STATE[0]), refused,
        (f"{API}/proposals/{reviewed}/actions/endorse", unknown | {"If-Match": f'"{reviewed}-4"'}, None),
        (f"{API}/proposals/{reviewed}/actions/endorse",  # the ETag the first endorsement leaves
         bearer(token_for(forum, ONE_HEAD_PER_STATE[1])) | {"If-Match": f'"{reviewed}-4"'}, None),
    ]
    with threads_of(forum) as seen:
        answers = asyncio.run(_at_once(app, requests))
    assert [r.status_code for r in answers] == [200, 403, 401, 200], [r.text for r in answers]
    assert len(seen["commits"]) == 1
    assert assert_problem(answers[1], 403)["my_actions"] == ["withdraw"]  # read as the group left it
    assert answers[3].headers["etag"] == f'"{reviewed}-5"'
    assert load(forum, in_review).state == "in_review" and load(forum, reviewed).version == 5


def test_the_readme_states_the_largest_group() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"(at most {units.GROUP_MAX} in one\ntransaction" in readme


def test_a_group_has_at_most_group_max_units(
    client: TestClient, app: FastAPI, sqlite_only: Engine, lifecycle: Lifecycle, monkeypatch: pytest.MonkeyPatch,
) -> None:
    forum = sqlite_only
    monkeypatch.setattr(units, "GROUP_MAX", 2)
    pids = [make_proposal(forum, lifecycle, state="reviewed") for _ in range(5)]
    requests = [_endorsement(client, forum, pid, ONE_HEAD_PER_STATE[0]) for pid in pids]
    with threads_of(forum) as seen:
        answers = asyncio.run(_at_once(app, requests))
    assert [r.status_code for r in answers] == [200] * 5
    assert len(seen["commits"]) == 3


def test_another_process_holding_sqlite_sends_every_unit_of_the_group_to_a_worker_thread(
    client: TestClient, app: FastAPI, sqlite_only: Engine, lifecycle: Lifecycle,
) -> None:
    forum = sqlite_only
    pids = [make_proposal(forum, lifecycle, state="reviewed") for _ in range(3)]
    requests = [_endorsement(client, forum, pid, ONE_HEAD_PER_STATE[0]) for pid in pids]
    other = _holding(forum, seconds=0.5)
    with threads_of(forum) as seen:
        answers = asyncio.run(_at_once(app, requests))
    assert other.wait(10) == 0
    assert [r.status_code for r in answers] == [200] * 3
    assert seen["commits"] == [WORKER] * 3  # the group rolled back at once; each unit waited its turn in a thread
    assert all(load(forum, pid).version == 4 for pid in pids)


# Units given to the group directly: works that misbehave as no route of the API does.
def _unit(forum: Engine, handle: str, work: units.Work[Any]) -> units._Unit[Any]:
    creds = Credentials(session_id=None, authorization=f"Bearer {token_for(forum, handle)}", csrf_token=None,
                        checks_csrf=False)
    return units._Unit(creds, T0, work, None)


def _submits(lifecycle: Lifecycle, pid: int, runs: list[int]) -> units.Work[Any]:
    def work(db: Session, who: Any, now: dt.datetime) -> Any:
        runs.append(pid)
        return lifecycle.apply(db, pid, "submit", who.member.handle, now=now)

    return work


async def _group(app: FastAPI, *group: units._Unit[Any]) -> list[Any]:
    commit = units.GroupCommit(app.state.web)
    return list(await asyncio.gather(*(commit.submit(u) for u in group), return_exceptions=True))


def _name_of(forum: Engine, handle: str) -> str:
    with Session(forum) as s:
        member = s.get(Member, handle)
        assert member is not None
        return member.name


def test_a_unit_refused_after_writing_sends_its_group_to_run_unit_by_unit(
    app: FastAPI, sqlite_only: Engine, lifecycle: Lifecycle,
) -> None:
    forum = sqlite_only
    pid, runs = make_proposal(forum, lifecycle), []
    name = _name_of(forum, AUTHOR)

    def writes_then_refuses(db: Session, who: Any, now: dt.datetime) -> None:
        db.connection().exec_driver_sql("UPDATE member SET name = 'changed' WHERE handle = 'zhao.lei'")
        raise NotAllowedError("refused after a write")

    group = _unit(forum, AUTHOR, _submits(lifecycle, pid, runs)), _unit(forum, AUTHOR, writes_then_refuses)
    with threads_of(forum) as seen:
        good, refused = asyncio.run(_group(app, *group))
    assert isinstance(refused, NotAllowedError)
    assert [e.action for e in good[1]] == ["submit"] and runs == [pid, pid]  # run in the group, then alone
    assert len(seen["commits"]) == 1  # only the good unit's own
    assert _name_of(forum, AUTHOR) == name  # nothing of the refused unit stays
    _submitted_once(forum, pid)


def test_an_unexpected_error_reaches_only_its_own_request(app: FastAPI, sqlite_only: Engine, lifecycle: Lifecycle) -> None:
    forum = sqlite_only
    pid, runs = make_proposal(forum, lifecycle), []

    def breaks(db: Session, who: Any, now: dt.datetime) -> None:
        raise KeyError("a bug")

    good, broken = asyncio.run(_group(app, _unit(forum, AUTHOR, _submits(lifecycle, pid, runs)), _unit(forum, AUTHOR, breaks)))
    assert isinstance(broken, KeyError)
    assert [e.action for e in good[1]] == ["submit"]
    _submitted_once(forum, pid)


def test_a_failed_commit_is_not_run_again(app: FastAPI, sqlite_only: Engine, lifecycle: Lifecycle) -> None:
    forum = sqlite_only
    pids, runs = [make_proposal(forum, lifecycle) for _ in range(2)], []

    def fails_once(*args: object) -> None:  # after the driver's commit (the write lock's listener came first)
        event.remove(forum, "commit", fails_once)
        raise OSError("the commit's answer was lost")

    group = [_unit(forum, AUTHOR, _submits(lifecycle, pid, runs)) for pid in pids]
    event.listen(forum, "commit", fails_once)
    answers = asyncio.run(_group(app, *group))
    assert all(isinstance(a, OSError) for a in answers)
    assert runs == pids  # once each: a commit that failed may have committed
    for pid in pids:
        _submitted_once(forum, pid)


def test_units_that_arrive_on_the_next_turns_of_the_loop_join_the_group(
    app: FastAPI, sqlite_only: Engine, lifecycle: Lifecycle,
) -> None:
    forum = sqlite_only
    pids, runs = [make_proposal(forum, lifecycle) for _ in range(3)], []
    group = [_unit(forum, AUTHOR, _submits(lifecycle, pid, runs)) for pid in pids]

    async def one_a_turn() -> list[Any]:
        commit, tasks = units.GroupCommit(app.state.web), []
        for unit in group:  # as requests read one after the other from the network
            tasks.append(asyncio.create_task(commit.submit(unit)))
            await asyncio.sleep(0)
        return list(await asyncio.gather(*tasks))

    with threads_of(forum) as seen:
        answers = asyncio.run(one_a_turn())
    assert [[e.action for e in events] for _, events in answers] == [["submit"]] * 3
    assert len(seen["commits"]) == 1 and runs == pids
