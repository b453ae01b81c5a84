"""A real aiosmtpd server on a free loopback port, with a handler the tests control."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from config.settings import Settings
from models import session_scope, sync_definition
from tests.notifications.helpers import SmtpServer


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A running server, stopped at the end."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()
    assert server.handler.bad_calendars == [], "an invalid .ics was mailed"


@pytest.fixture
def settings(tmp_path: Path, smtp_server: SmtpServer) -> Settings:
    """Settings pointing at the test server, with two connections."""
    return Settings(
        data_dir=tmp_path, smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_tls="none",
        smtp_timeout=5, smtp_connections=2, mail_from="Forum Secretariat <forumflow@example.org>",
    )


@pytest.fixture
def db(sqlite_engine: Engine, definition: Any) -> Engine:
    """An SQLite file in tmp_path holding the shipped forum."""
    with session_scope(sqlite_engine) as s:
        sync_definition(s, definition)
    return sqlite_engine
