"""Shared fixtures: the default definition, engines on SQLite and PostgreSQL, a synced forum."""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from config import DEFAULT_FORUM_FILE, ForumDefinition, load_definition
from models import Lifecycle, create_schema, make_engine, session_scope, sync_definition
from models.db import normalise_url

POSTGRES_ENV = "FORUMFLOW_TEST_POSTGRES_URL"

# Prefect runs offline and keeps its state out of the user's home. Nothing above imports prefect, and this
# module is imported before any test module, so these are in place before prefect reads its settings.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="forumflow-prefect-"))
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(autouse=True)
def _no_prefect_console_on_root() -> None:
    """Prefect puts a console handler on the root logger bound to the stderr of the moment it was set up.

    Under pytest that may be a CliRunner's captured stream, closed since: any later warning logged anywhere
    would print a "Logging error" traceback into the next command's output. Tests read logs through caplog.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h).__name__ == "PrefectConsoleHandler"]:
        root.removeHandler(handler)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server and database for the whole test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def definition() -> ForumDefinition:
    """The shipped SCO Heads of Regions Forum."""
    return load_definition(DEFAULT_FORUM_FILE)


@pytest.fixture(scope="session")
def lifecycle(definition: ForumDefinition) -> Lifecycle:
    """The lifecycle of the shipped forum."""
    return Lifecycle(definition)


def postgres_url() -> str | None:
    """The PostgreSQL URL for tests; in CI it must be set."""
    url = os.environ.get(POSTGRES_ENV)
    if not url and os.environ.get("CI"):
        pytest.fail(f"{POSTGRES_ENV} must be set in CI: the PostgreSQL tests may not skip there")
    return url


@contextmanager
def postgres_schema() -> Iterator[tuple[str, str, str]]:
    """A PostgreSQL schema of its own, dropped afterwards: (server URL, schema, a forumflow database URL using it).

    Skips the test when no PostgreSQL URL is set (outside CI)."""
    url = postgres_url()
    if not url:
        pytest.skip(f"{POSTGRES_ENV} not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url, schema, f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _postgres_engine() -> Iterator[Engine]:
    with postgres_schema() as (url, schema, _):
        engine = make_engine(normalise_url(url), schema=schema)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database with the schema, on SQLite and on PostgreSQL (own schema per test)."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'forumflow.db'}")
        create_schema(eng)
        yield eng
        eng.dispose()
    else:
        for eng in _postgres_engine():
            create_schema(eng)
            yield eng


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """An SQLite database with the schema (for tests that need no PostgreSQL variant)."""
    eng = make_engine(f"sqlite:///{tmp_path / 'forumflow.db'}")
    create_schema(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def forum(engine: Engine, definition: ForumDefinition) -> Engine:
    """A database holding the shipped forum's regions, members, groups and terms."""
    with session_scope(engine) as session:
        sync_definition(session, definition)
    return engine
