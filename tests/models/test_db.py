"""UTCDateTime on SQLite: its own processors store and read exactly what SQLAlchemy's DateTime would."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import DATETIME

from models.db import UTCDateTime

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
