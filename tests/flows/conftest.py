"""Flow fixtures: every test here runs under the session's one Prefect test harness."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import ForumDefinition
from models import create_schema, make_engine, session_scope, sync_definition


def interrupt(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 60) -> None:
    """Stop a command as Ctrl-C does (SIGINT) and wait for it; killed if it has not ended within ``timeout``."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(autouse=True)
def _prefect(prefect_harness: None) -> None:
    """Flows here talk to the session's temporary Prefect server."""


@pytest.fixture(autouse=True)
def _restore_forumflow_environment() -> Iterator[None]:
    """Commands that run flows export their settings to the environment; undo that after each test."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("FORUMFLOW_")}
    yield
    for key in [k for k in os.environ if k.startswith("FORUMFLOW_")]:
        del os.environ[key]
    os.environ.update(saved)


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
