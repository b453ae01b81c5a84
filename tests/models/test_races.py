"""Races end in a clear answer: the loser gets a ConflictError (exit 5, one line) or finds the work done and says so.

Each race is real: two sessions in threads (or several processes) that have all read before any writes. SQLite
lets one writer in at a time, so there the loser waits for the winner's commit and then finds the conflict.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import ConflictError, ForumflowError, Lifecycle, create_schema, session_scope, sync_definition
from models.migrations import head_revision
from models.tables import EndorsementDecision, Event, Member, Proposal
from tests.factories import T0, make_proposal
from tests.models.conftest import EmptyDb

TIMEOUT = 60  # seconds: every wait below is bounded by this


WRITES = ("INSERT", "UPDATE", "DELETE")


def _together(engine: Engine, works: list[Callable[[Session], Any]]) -> list[Any]:
    """Run each work in its own thread and session; all reach their first write before any writes, then commit.

    The gate is the first INSERT, UPDATE or DELETE a work sends (the ORM's flush or a Core statement alike), so
    every work has read what it checks before any of them writes. Returns what each work returned, or the
    ForumflowError it raised (its session rolled back).
    """
    barrier = threading.Barrier(len(works), timeout=TIMEOUT)
    racing = threading.local()

    def gate(conn: object, cursor: object, statement: str, *args: object) -> None:
        if getattr(racing, "before_first_write", False) and statement.lstrip().upper().startswith(WRITES):
            racing.before_first_write = False
            barrier.wait()

    results: list[Any] = [None] * len(works)

    def run(i: int) -> None:
        racing.before_first_write = True
        with Session(engine, expire_on_commit=False) as session:
            try:
                results[i] = works[i](session)
                session.commit()
            except ForumflowError as exc:
                session.rollback()
                results[i] = exc
            except BaseException as exc:  # reported by the test, not lost in the thread
                session.rollback()
                results[i] = exc

    event.listen(engine, "before_cursor_execute", gate)
    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(works))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
    finally:
        event.remove(engine, "before_cursor_execute", gate)
    assert not any(t.is_alive() for t in threads), "a racing session did not finish in time"
    assert barrier.n_waiting == 0 and not barrier.broken, "a racing session did not reach its first write"
    return results


@pytest.mark.parametrize("second", ["endorse", "object"])
def test_the_same_head_deciding_twice_at_once_gets_one_decision_and_one_conflict(
    forum: Engine, lifecycle: Lifecycle, second: str
) -> None:
    """Both requests pass the checks before either writes; the unique decision key picks the winner."""
    pid = make_proposal(forum, lifecycle, state="reviewed")

    def decide(action: str) -> Callable[[Session], Any]:
        def work(session: Session) -> Any:
            comment = "not yet" if action == "object" else ""
            return [e.action for e in lifecycle.apply(session, pid, action, "petrov", comment=comment, now=T0)]

        return work

    results = _together(forum, [decide("endorse"), decide(second)])
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(losers) == 1, results
    assert isinstance(losers[0], ConflictError), repr(losers[0])
    assert str(losers[0]) == f"proposal {pid}: petrov has just decided in round 1 (at the same time); reload and try again"
    with session_scope(forum) as s:
        decisions = s.exec(select(EndorsementDecision).where(EndorsementDecision.proposal_id == pid)).all()  # type: ignore[call-overload]
        proposal = s.get(Proposal, pid)
        assert proposal is not None
        assert len(decisions) == 1 and proposal.version == 4  # created, submitted, recommended, one decision


def test_two_heads_deciding_at_once_get_one_change_and_one_conflict(forum: Engine, lifecycle: Lifecycle) -> None:
    """Different heads: both decisions are valid alone, but the version check lets one through at a time."""
    pid = make_proposal(forum, lifecycle, state="reviewed")
    works = [lambda s, h=h: lifecycle.apply(s, pid, "endorse", h, now=T0) for h in ("petrov", "karimov")]
    results = _together(forum, works)
    assert sum(isinstance(r, ConflictError) for r in results) == 1, results
    assert sum(isinstance(r, list) for r in results) == 1, results
    _wrote_once(forum, pid, version=4, decisions=1)  # the loser's decision, written before its UPDATE failed, is gone


def test_two_actions_at_once_one_wins_and_the_loser_writes_nothing(forum: Engine, lifecycle: Lifecycle) -> None:
    """Recommend and withdraw at once: both pass their checks, the conditional UPDATE lets one through."""
    pid = make_proposal(forum, lifecycle, state="in_review")
    works: list[Callable[[Session], Any]] = [
        lambda s: lifecycle.apply(s, pid, "recommend", "kuznetsov", now=T0),
        lambda s: lifecycle.apply(s, pid, "withdraw", "zhao.lei", now=T0),
    ]
    results = _together(forum, works)
    (loser,) = [r for r in results if isinstance(r, BaseException)]
    assert isinstance(loser, ConflictError), repr(loser)
    assert str(loser) == f"proposal {pid} was changed by someone else; reload and try again"
    (winner,) = [r for r in results if isinstance(r, list)]
    with session_scope(forum) as s:
        assert s.get(Proposal, pid).state == winner[0].to_state  # type: ignore[union-attr]
    _wrote_once(forum, pid, version=3, decisions=0)


def _wrote_once(engine: Engine, pid: int, *, version: int, decisions: int) -> None:
    """The proposal moved one version on and holds one event per version, and ``decisions`` decisions."""
    with session_scope(engine) as s:
        proposal = s.get(Proposal, pid)
        assert proposal is not None and proposal.version == version
        events = Event.__table__  # type: ignore[attr-defined]
        seqs = s.execute(select(events.c.seq).where(events.c.proposal_id == pid).order_by(events.c.seq)).scalars().all()
        assert seqs == list(range(1, version + 1))
        count = select(func.count()).select_from(EndorsementDecision).where(EndorsementDecision.proposal_id == pid)  # type: ignore[arg-type]
        assert s.execute(count).scalar_one() == decisions


# ---------------------------------------------------------------------------- processes: the CLI
GATE = """
import os, pathlib, sys, time
gate = pathlib.Path(os.environ["RACE_GATE"])

def wait_for_all(*_):
    (gate / os.environ["RACE_ID"]).touch()
    deadline = time.monotonic() + {timeout}
    while len(list(gate.iterdir())) < int(os.environ["RACE_N"]) and time.monotonic() < deadline:
        time.sleep(0.005)

if os.environ["RACE_AT"] == "write":
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    first = [True]

    def before_first_write(conn, cursor, statement, *args):
        if first[0] and statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            first[0] = False
            wait_for_all()

    event.listen(Engine, "before_cursor_execute", before_first_write)
else:
    from cli.main import app  # import first, so that the processes start the command together
    wait_for_all()
from cli.main import main
sys.argv = ["forumflow", *sys.argv[1:]]
main()
""".replace("{timeout}", str(TIMEOUT))


def _processes(tmp_path: Path, args: list[str], n: int, *, at: str) -> list[subprocess.CompletedProcess[str]]:
    """Run ``forumflow ARGS`` in n processes that wait for each other at ``at`` (start, or the first write)."""
    gate = tmp_path / f"gate-{time.monotonic_ns()}"
    gate.mkdir()
    env = {
        **os.environ, "RACE_GATE": str(gate), "RACE_N": str(n), "RACE_AT": at, "COLUMNS": "200",
        "FORUMFLOW_DATA_DIR": str(tmp_path / "data"),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", GATE, *args], env={**env, "RACE_ID": str(i)}, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for i in range(n)
    ]
    done = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=TIMEOUT * 2)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


@pytest.mark.slow
def test_concurrent_init_on_an_empty_database_creates_the_schema_once(empty_db: EmptyDb, tmp_path: Path) -> None:
    """Four `forumflow init` at once: one creates the schema, the others wait, find it current and re-sync."""
    runs = _processes(tmp_path, ["--db", empty_db.url, "init"], 4, at="start")
    assert [r.returncode for r in runs] == [0, 0, 0, 0], [r.stderr for r in runs]
    firsts = [r.stdout.splitlines()[0] for r in runs]
    assert sorted(firsts) == sorted([f"schema created at revision {head_revision()}"] + [
        f"schema at revision {head_revision()}, up to date"] * 3), firsts
    with empty_db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
        assert conn.execute(select(func.count()).select_from(Member)).scalar_one() > 0


@pytest.mark.slow
def test_concurrent_first_commands_on_an_empty_database(empty_db: EmptyDb, tmp_path: Path) -> None:
    """Three commands at once on an empty database: the schema and the definition are created once, all succeed."""
    runs = _processes(tmp_path, ["--db", empty_db.url, "list", "--json"], 3, at="start")
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    assert all(r.stdout.strip() == "[]" for r in runs)


@pytest.mark.slow
def test_the_cli_loser_of_an_endorsement_race_gets_exit_5_and_one_line(
    empty_db: EmptyDb, definition: Any, lifecycle: Lifecycle, tmp_path: Path
) -> None:
    """Two `act 1 endorse --as petrov` processes that both read before either writes: exit 0 and exit 5."""
    create_schema(empty_db.engine)
    with session_scope(empty_db.engine) as s:
        sync_definition(s, definition)
    pid = make_proposal(empty_db.engine, lifecycle, state="reviewed")
    runs = _processes(tmp_path, ["--db", empty_db.url, "act", str(pid), "endorse", "--as", "petrov"], 2, at="write")
    assert sorted(r.returncode for r in runs) == [0, 5], [(r.returncode, r.stderr) for r in runs]
    loser = next(r for r in runs if r.returncode == 5)
    assert loser.stderr.splitlines() == [
        f"error: proposal {pid}: petrov has just decided in round 1 (at the same time); reload and try again"
    ]
    assert loser.stdout == ""


# ---------------------------------------------------------------------------- leftovers at the CLI boundary
@pytest.mark.slow
def test_a_command_blocked_past_the_lock_timeout_gets_one_line(
    empty_db: EmptyDb, definition: Any, lifecycle: Lifecycle, tmp_path: Path
) -> None:
    """A database error no command expects (here: another session holds a lock too long) is one line, exit 1."""
    from typer.testing import CliRunner

    from cli.main import app

    create_schema(empty_db.engine)
    with session_scope(empty_db.engine) as s:
        sync_definition(s, definition)
    if empty_db.backend == "postgres":
        url = empty_db.url + "%20-clock_timeout%3D300"  # a 0.3 s lock timeout, as a busy server might have
        args = ["--db", url, "list"]
        hold = "LOCK TABLE proposal IN ACCESS EXCLUSIVE MODE"
        expected = "canceling statement due to lock timeout"
    else:
        url = empty_db.url
        args = ["--db", url, "propose", "--group", "industry", "--as", "zhao.lei", "--title", "Blocked"]
        hold = "BEGIN IMMEDIATE"  # SQLite's one writer; the command gives up after its 10 s busy timeout
        expected = "database is locked"
    holder = empty_db.engine.raw_connection()
    try:
        holder.cursor().execute(hold)
        started = time.monotonic()
        r = CliRunner().invoke(app, args, catch_exceptions=False, env={"COLUMNS": "200"})
        assert time.monotonic() - started < TIMEOUT
    finally:
        holder.rollback()
        holder.close()
    assert r.exit_code == 1, r.output
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: database ") and line.endswith(f": {expected}"), line
    assert r.stdout == ""
