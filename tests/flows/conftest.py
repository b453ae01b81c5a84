"""Flow fixtures: every test here runs under the session's one Prefect test harness."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ForumDefinition
from models import create_schema, make_engine, session_scope, sync_definition


@pytest.fixture(autouse=True)
def _prefect(prefect_harness: None) -> None:
    """Flows here talk to the session's temporary Prefect server."""


@pytest.fixture
def forum_url(tmp_path: Path, definition: ForumDefinition) -> str:
    """URL of an SQLite database holding the shipped forum (flows open their own engine from it)."""
    url = f"sqlite:///{tmp_path / 'forumflow.db'}"
    engine = make_engine(url)
    create_schema(engine)
    with session_scope(engine) as session:
        sync_definition(session, definition)
    engine.dispose()
    return url
