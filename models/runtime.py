"""The runtime every interface (CLI, web, flows) builds the same way: settings, definition, lifecycle, engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from config.definition import ForumDefinition, load_definition
from config.settings import Settings
from models.db import create_schema, make_engine, session_scope
from models.errors import ForumflowError
from models.lifecycle import Lifecycle

log = logging.getLogger(__name__)


class DatabaseError(ForumflowError):
    """The database cannot be reached or prepared; the message names it (password masked)."""

    exit_code = 1


@dataclass(frozen=True)
class Runtime:
    """What every interface needs: settings, the forum definition, its lifecycle and an engine."""

    settings: Settings
    definition: ForumDefinition
    lifecycle: Lifecycle
    engine: Engine


def shown_url(url: str) -> str:
    """A database URL with its password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def database_failure(settings: Settings, exc: SQLAlchemyError) -> DatabaseError:
    """One line naming the database (password masked) and the driver's first line of complaint."""
    reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["unknown error"])[0]
    return DatabaseError(f"database {shown_url(settings.db_url)}: {reason}")


def _make_sqlite_folder(settings: Settings) -> None:
    """An SQLite file's folder is created on first use (the default lives in the data dir)."""
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return
    url = make_url(settings.database_url) if "://" in settings.database_url else None
    if url is not None and url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def open_runtime(settings: Settings, *, sync_if_empty: bool = True) -> Runtime:
    """Load the definition (ForumDefinitionError on a bad file), open the database and prepare its schema.

    With ``sync_if_empty``, an empty database receives the definition's regions, members, groups and terms.
    A database that cannot be reached raises DatabaseError with one line.
    """
    from sqlmodel import select

    from models.sync import sync_definition
    from models.tables import Member

    definition = load_definition(settings.forum_file)
    _make_sqlite_folder(settings)
    try:
        engine = make_engine(settings.db_url)
        create_schema(engine)
        if sync_if_empty:
            with session_scope(engine) as session:
                if session.exec(select(Member.handle).limit(1)).first() is None:
                    sync_definition(session, definition)
    except SQLAlchemyError as exc:
        raise database_failure(settings, exc) from None
    log.debug("runtime on %s", shown_url(settings.db_url))
    return Runtime(settings, definition, Lifecycle(definition), engine)


_shared: dict[tuple[str, str], Runtime] = {}


def runtime_for(settings: Settings) -> Runtime:
    """The process-wide runtime for the settings' database and forum file (built on first use, then reused).

    For long-lived processes (flow workers, the web app): the engine and its pool are shared.
    """
    key = (settings.db_url, str(settings.forum_file))
    rt = _shared.get(key)
    if rt is None:
        rt = _shared[key] = open_runtime(settings)
    return rt
