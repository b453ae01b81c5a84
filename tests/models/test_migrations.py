"""The schema under Alembic: the models and the migrations agree, upgrades keep data, stale schemas are refused."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect, select, text
from sqlalchemy.engine import Connection, Engine

import models.migrations
from config import ForumDefinition
from config.settings import Settings
from models import Lifecycle, create_schema, session_scope
from models.db import FIRST_REVISION, schema_status, upgrade_schema
from models.migrations import alembic_config, head_revision, render_item, target_metadata
from models.runtime import DatabaseError, initialise, open_runtime
from models.tables import EndorsementDecision, Event, Member, Proposal
from tests.models.conftest import EmptyDb

T = dt.datetime(2022, 3, 1, 9, 30, tzinfo=dt.UTC)


def _diff(conn: Connection, metadata: MetaData | None = None) -> list[Any]:
    """What autogenerate would write to make the database match ``metadata`` (the models by default)."""
    ctx = MigrationContext.configure(conn, opts={"compare_type": True, "render_item": render_item})
    return compare_metadata(ctx, metadata if metadata is not None else target_metadata())


def _version(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]


# ---------------------------------------------------------------------------- models and migrations agree
def test_models_and_migrations_agree(empty_db: EmptyDb) -> None:
    """A database upgraded to the newest revision is exactly what the models describe: no one adds a column alone."""
    before = upgrade_schema(empty_db.engine)
    assert before.state == "empty"
    with empty_db.engine.connect() as conn:
        assert _diff(conn) == []
    assert _version(empty_db.engine) == [head_revision()]


def test_agreement_check_sees_a_column_the_migrations_lack(empty_db: EmptyDb) -> None:
    """The comparison above is able to fail: a column only in the models shows up as a difference."""
    upgrade_schema(empty_db.engine)
    changed = MetaData()
    for table in target_metadata().sorted_tables:
        table.to_metadata(changed)
    changed.tables["proposal"].append_column(Column("budget", Integer, nullable=True))
    with empty_db.engine.connect() as conn:
        diff = _diff(conn, changed)
    assert [(d[0], d[2], d[3].name) for d in diff] == [("add_column", "proposal", "budget")]


def test_create_schema_stamps_the_newest_revision_and_matches_the_migrations(empty_db: EmptyDb) -> None:
    """The quick path (create_all and stamp) for tests and scratch databases ends where the migrations end."""
    create_schema(empty_db.engine)
    status = schema_status(empty_db.engine)
    assert (status.state, status.current, status.stamped) == ("current", head_revision(), True)
    with empty_db.engine.connect() as conn:
        assert _diff(conn) == []
