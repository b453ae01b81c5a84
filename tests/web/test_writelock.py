"""One writer at a time per SQLite database in the process: writers queue on the lock, never in SQLite's busy handler."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from models import make_engine
from web.writelock import serialise_writes


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    yield engine
    engine.dispose()


def _write_while_another_holds(engine: Engine) -> list[BaseException | None]:
    """Thread A inserts and keeps its transaction open; thread B, whose SQLite gives up at once when the database is
    locked (busy_timeout 0), inserts too; then A commits. What B met (None: its insert went in)."""
    a_wrote, b_started, outcome = threading.Event(), threading.Event(), []

    def a() -> None:
        with engine.connect() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            a_wrote.set()
            b_started.wait(5)
            threading.Event().wait(0.3)  # B is now waiting, for the lock or in vain
            conn.commit()

    def b() -> None:
        a_wrote.wait(5)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout=0")
            b_started.set()
            try:
                conn.execute(text("INSERT INTO t VALUES (2)"))
                conn.commit()
                outcome.append(None)
            except OperationalError as exc:
                outcome.append(exc)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return outcome


def test_without_the_lock_the_second_writer_meets_sqlites_lock(sqlite: Engine) -> None:
    (outcome,) = _write_while_another_holds(sqlite)
    assert isinstance(outcome, OperationalError) and "locked" in str(outcome)


def test_with_the_lock_the_second_writer_waits_for_the_first_to_commit(sqlite: Engine) -> None:
    assert serialise_writes(sqlite) is serialise_writes(sqlite) is not None  # installed once
    assert _write_while_another_holds(sqlite) == [None]
    with sqlite.connect() as conn:
        assert sorted(n for (n,) in conn.execute(text("SELECT n FROM t"))) == [1, 2]


def test_rollback_and_errors_give_the_lock_back(sqlite: Engine) -> None:
    lock = serialise_writes(sqlite)
    assert lock is not None
    with sqlite.connect() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        assert lock.locked()
        conn.rollback()
        assert not lock.locked()
    with pytest.raises(OperationalError), sqlite.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        conn.execute(text("INSERT INTO nowhere VALUES (1)"))
    assert not lock.locked()
    with sqlite.connect() as conn:  # a connection closed in the middle of its transaction
        conn.execute(text("INSERT INTO t VALUES (3)"))
    assert not lock.locked()
    with sqlite.connect() as conn:
        assert [n for (n,) in conn.execute(text("SELECT n FROM t"))] == []


def test_readers_do_not_wait_for_a_writer(sqlite: Engine) -> None:
    lock = serialise_writes(sqlite)
    assert lock is not None
    with sqlite.connect() as writer, sqlite.connect() as reader:
        writer.execute(text("INSERT INTO t VALUES (1)"))
        assert lock.locked()
        assert reader.execute(text("SELECT count(*) FROM t")).scalar_one() == 0  # at once, the last committed state
        writer.commit()
        assert not lock.locked()


def test_only_sqlite_gets_a_lock() -> None:
    engine = make_engine("postgresql://nobody@127.0.0.1:1/none")  # never connected
    assert serialise_writes(engine) is None
