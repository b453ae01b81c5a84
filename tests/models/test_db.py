"""UTCDateTime on SQLite: its own processors store and read exactly what SQLAlchemy's DateTime would; scratch engines."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import DATETIME
from sqlalchemy.engine import Connection
from sqlmodel import Session

from models.db import UTCDateTime, make_engine

MOMENTS = [
    dt.datetime(2021, 3, 1, 9, 0, tzinfo=dt.UTC),
    dt.datetime(2021, 3, 1, 9, 0, 0, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
    dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    dt.datetime(2021, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=3))),  # stored as 09:00 UTC
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_sqlite_stores_what_sqlalchemy_would_and_reads_it_back_in_utc(moment: dt.datetime) -> None:
    dialect = sqlite.dialect()
    ours = UTCDateTime().bind_processor(dialect)
    theirs = DATETIME().bind_processor(dialect)
    assert ours is not None and theirs is not None
    stored = ours(moment)
    assert stored == theirs(moment.astimezone(dt.UTC).replace(tzinfo=None))  # the same text: comparisons in SQL hold
    read = UTCDateTime().result_processor(dialect, None)
    assert read is not None
    back = read(stored)
    assert back == moment and back.tzinfo is dt.UTC
    assert ours(None) is None and read(None) is None


def test_sqlite_refuses_a_naive_moment() -> None:
    process = UTCDateTime().bind_processor(sqlite.dialect())
    assert process is not None
    with pytest.raises(ValueError, match="naive datetime"):
        process(dt.datetime(2021, 3, 1, 9, 0))


def two_savepoints(conn: Connection) -> None:
    """In the connection's transaction: a savepoint that writes 'kept', then one that writes 'undone' and fails.

    Both come before any other write: each must stay inside the transaction, neither may end it.
    """
    with Session(bind=conn, join_transaction_mode="rollback_only") as session:
        with session.begin_nested():
            session.connection().exec_driver_sql("INSERT INTO t VALUES ('kept')")
        with pytest.raises(RuntimeError), session.begin_nested():
            session.connection().exec_driver_sql("INSERT INTO t VALUES ('undone')")
            raise RuntimeError


def test_a_scratch_database_is_not_synced_and_its_savepoints_undo_only_their_own_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'scratch.db'}"
    plain = make_engine(url)
    with plain.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x TEXT)")
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL: a forum's database is synced
    plain.dispose()
    engine = make_engine(url, scratch=True)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 0  # OFF
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            conn.commit()
            conn.begin()
            two_savepoints(conn)
            assert conn.in_transaction()
            conn.rollback()
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0  # the whole transaction rolled back
            conn.commit()
            conn.begin()
            two_savepoints(conn)
            conn.commit()
            assert [r[0] for r in conn.exec_driver_sql("SELECT x FROM t")] == ["kept"]
    finally:
        engine.dispose()
    with pytest.raises(ValueError, match="only an SQLite database"):
        make_engine("postgresql://nobody@127.0.0.1/none", scratch=True)
