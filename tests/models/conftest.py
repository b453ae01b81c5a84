"""Fixtures for schema and concurrency tests: empty databases reachable by URL (for Settings and subprocesses)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from models import make_engine
from tests.conftest import _postgres_engine, postgres_url


@dataclass
class EmptyDb:
    """An empty database: an engine on it and a URL that reaches the same database (and PostgreSQL schema)."""

    engine: Engine
    url: str
    backend: str
    schema: str | None = None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmptyDb]:
    """A database without any table, on SQLite and on PostgreSQL (a schema of its own, named in the URL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'forumflow.db'}"
        eng = make_engine(url)
        yield EmptyDb(eng, url, "sqlite")
        eng.dispose()
        return
    for eng in _postgres_engine():
        with eng.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        base = postgres_url()
        assert base is not None
        yield EmptyDb(eng, f"{base}?options=-csearch_path%3D{schema}", "postgres", schema)


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements run on ``engine`` inside the block."""
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)
