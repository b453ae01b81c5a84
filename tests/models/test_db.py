"""UTCDateTime on SQLite: its own processors store and read exactly what SQLAlchemy's DateTime would; scratch engines;
statements run on the driver's cursor."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import DATETIME
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel, col, select

from config import DEFAULT_FORUM_FILE, load_definition
from models import session_scope, sync_definition
from models.db import DriverStatement, UTCDateTime, make_engine
from models.tokens import ApiToken, create_token, live_token, note_use

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


# ---------------------------------------------------------------------- DriverStatement
_READ = (
    select(col(ApiToken.id), col(ApiToken.member), col(ApiToken.created_at), col(ApiToken.last_used_at))
    .where(col(ApiToken.name) == bindparam("name"), col(ApiToken.revoked_at).is_(None), col(ApiToken.id) > 0)
)


def _tokens(engine: Engine) -> None:
    with session_scope(engine) as s:
        create_token(s, "zhao.lei", name="laptop", now=MOMENTS[2])
        used = create_token(s, "kuznetsov", name="script", now=MOMENTS[0])
        note_use(s, live_token(s, used.raw)[0], MOMENTS[4])  # type: ignore[index]


def test_a_driver_read_gives_the_rows_sqlalchemy_gives_with_the_statements_own_values(forum: Engine) -> None:
    _tokens(forum)
    with forum.connect() as conn:
        driver = DriverStatement.for_dialect(_READ, conn.dialect)
        assert driver.fixed  # the literal 0 the statement compares with travels with it
        for name in ("laptop", "script"):
            expected = conn.execute(_READ, {"name": name}).one()
            got = driver.first(conn, {"name": name})
            assert got == tuple(expected)
            assert got is not None and got[2].tzinfo is not None  # the UTC moment, as UTCDateTime reads it
        assert driver.first(conn, {"name": "nobody"}) is None
        assert DriverStatement.for_dialect(_READ, conn.dialect) is driver  # compiled once per dialect


def test_a_driver_insert_of_many_rows_counts_those_inserted_and_stores_what_sqlalchemy_would(
    sqlite_engine: Engine,
) -> None:
    with session_scope(sqlite_engine) as s:
        sync_definition(s, load_definition(DEFAULT_FORUM_FILE))
    table = SQLModel.metadata.tables["api_token"]
    statement = sqlite.insert(table).on_conflict_do_nothing()
    rows = [
        {"token_hash": f"h{i}", "member": "zhao.lei", "name": f"t{i}", "created_at": MOMENTS[i % len(MOMENTS)]}
        for i in range(6)
    ]
    with sqlite_engine.begin() as conn:
        driver = DriverStatement.for_dialect(statement, conn.dialect, tuple(rows[0]))
        assert driver.executemany(conn, rows[:4]) == 4
        assert driver.executemany(conn, rows) == 2  # the first four are there: nothing happens to them
    with sqlite_engine.connect() as conn:
        stored = conn.execute(select(table.c.token_hash, table.c.created_at).order_by(table.c.id)).all()
    assert [(h, at) for h, at in stored] == [(r["token_hash"], r["created_at"].astimezone(dt.UTC)) for r in rows]


def test_a_failing_driver_write_discards_its_connection(sqlite_engine: Engine) -> None:
    broken = DriverStatement(text("UPDATE no_such_table SET x = :x"), sqlite_engine.dialect)
    with sqlite_engine.connect() as conn:
        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            broken.executemany(conn, [{"x": 1}])
        assert conn.invalidated
