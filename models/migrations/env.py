"""Alembic environment: runs on the connection forumflow hands over, or on a URL given to ``python -m models.migrations``.

Offline (SQL script) mode is not supported: forumflow always migrates a live database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from models.db import make_engine
from models.migrations import render_item, target_metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        # SQLite cannot ALTER most things: later revisions use batch operations (copy and move).
        render_as_batch=True,
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("forumflow migrations run on a live database only (no --sql)")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: forumflow passes a connection; python -m models.migrations passes --db")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
