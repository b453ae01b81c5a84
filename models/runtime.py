"""The runtime every interface (CLI, web, flows) builds the same way: settings, definition, lifecycle, engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from config.definition import ForumDefinition, load_definition
from config.settings import Settings
from models.db import SchemaError, SchemaStatus, make_engine, schema_lock, schema_status, upgrade_on
from models.errors import ForumflowError
from models.lifecycle import Lifecycle
from models.sync import SyncReport

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
    """An SQLite file's folder is created on first use (the default lives in the data dir); DatabaseError if it cannot be."""
    folder = settings.data_dir
    if settings.database_url is not None:
        url = make_url(settings.database_url) if "://" in settings.database_url else None
        if url is None or url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return
        folder = Path(url.database).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create the folder {folder} for the database: {exc.strerror or exc}") from None


# The databases forumflow runs on, by SQLAlchemy's backend name.
BACKENDS = ("sqlite", "postgresql")


def _check_url(settings: Settings) -> None:
    """Refuse a URL of a database forumflow does not run on, or with an asynchronous driver, in one line."""
    try:
        url = make_url(settings.db_url)
    except ArgumentError:
        raise DatabaseError(f"database {shown_url(settings.db_url)}: not a database URL (e.g. postgresql://host/db)") from None
    where = f"database {shown_url(settings.db_url)}"
    if url.get_backend_name() not in BACKENDS:
        raise DatabaseError(f"{where}: forumflow runs on SQLite (sqlite:///file) and PostgreSQL (postgresql://host/db)")
    try:
        is_async = url.get_dialect().is_async
    except SQLAlchemyError as exc:
        raise DatabaseError(f"{where}: {exc}") from None
    if is_async:
        raise DatabaseError(f"{where}: {url.drivername} is an asynchronous driver; use postgresql:// (psycopg) or sqlite://")


def _has_members(conn: Connection) -> bool:
    from sqlalchemy import text

    # Plain SQL (models.tables.Member's table): compiling an ORM select costs a one-shot command more than running it.
    return conn.execute(text("SELECT 1 FROM member LIMIT 1")).first() is not None


def _sync(conn: Connection, definition: ForumDefinition) -> SyncReport:
    """Sync the definition inside the caller's transaction (the session joins it and does not commit)."""
    from sqlmodel import Session

    from models.sync import sync_definition

    with Session(bind=conn) as session:
        report = sync_definition(session, definition)
        session.flush()
    return report


def _prepare(engine: Engine, definition: ForumDefinition, *, sync_if_empty: bool) -> None:
    """Refuse a schema that is not current; bring an empty database to the newest revision (and its definition)."""
    with engine.connect() as conn:
        status = schema_status(conn)
        if status.usable and (not sync_if_empty or _has_members(conn)):
            return
    with schema_lock(engine) as conn:
        # Again under the lock: another process may have created or synced it meanwhile.
        status = schema_status(conn)
        if status.state == "empty":
            log.info("empty database: creating the schema at revision %s", status.head)
            upgrade_on(conn, status)
        elif not status.usable:
            action = "run 'forumflow init' to upgrade it" if status.state == "behind" else "'forumflow init' cannot fix it"
            raise SchemaError(f"{status.describe()}: {action}")
        if sync_if_empty and not _has_members(conn):
            _sync(conn, definition)


def _open(settings: Settings) -> tuple[ForumDefinition, Engine]:
    """The definition (kept validated in the data dir) and an engine (nothing connected yet).

    A URL that names no usable driver is one line.
    """
    _check_url(settings)
    _make_sqlite_folder(settings)
    definition = load_definition(settings.forum_file, cache_dir=settings.data_dir)
    try:
        return definition, make_engine(settings.db_url)
    except SQLAlchemyError as exc:
        raise database_failure(settings, exc) from None
    except ImportError as exc:  # the URL names a driver that is not installed
        raise DatabaseError(f"database {shown_url(settings.db_url)}: its driver is not installed ({exc})") from None


def _refuse(settings: Settings, engine: Engine, exc: SQLAlchemyError | SchemaError) -> NoReturn:
    """Close the engine and raise DatabaseError with one line naming the database."""
    engine.dispose()
    if isinstance(exc, SchemaError):
        raise DatabaseError(f"database {shown_url(settings.db_url)}: {exc}") from None
    raise database_failure(settings, exc) from None


def open_runtime(settings: Settings, *, sync_if_empty: bool = True) -> Runtime:
    """Load the definition (ForumDefinitionError on a bad file), open the database and check its schema.

    An empty database is brought to the newest schema revision and, with ``sync_if_empty``, receives the
    definition's regions, members, groups and terms. A database whose schema is behind (or unknown) raises
    DatabaseError telling to run ``forumflow init``; so does one that cannot be reached (one line each).
    """
    definition, engine = _open(settings)
    try:
        _prepare(engine, definition, sync_if_empty=sync_if_empty)
    except (SQLAlchemyError, SchemaError) as exc:
        _refuse(settings, engine, exc)
    log.debug("runtime on %s", shown_url(settings.db_url))
    return Runtime(settings, definition, Lifecycle(definition), engine)


@dataclass(frozen=True)
class InitReport:
    """What ``forumflow init`` did: the schema before and after, and the definition sync."""

    runtime: Runtime
    before: SchemaStatus
    sync: SyncReport

    def schema_line(self) -> str:
        """One line on the schema."""
        head = self.before.head
        if self.before.state == "empty":
            return f"schema created at revision {head}"
        if self.before.state == "current" and self.before.stamped:
            return f"schema at revision {head}, up to date"
        if self.before.state == "current":
            return f"schema made before migrations matches revision {head}: recorded as {head}"
        return f"schema upgraded from revision {self.before.current} to {head}"


def initialise(settings: Settings) -> InitReport:
    """Bring the schema to the newest revision and sync the definition, in one transaction under the schema lock.

    Safe to run concurrently: the second run waits for the first, then finds the schema current and re-syncs.
    """
    definition, engine = _open(settings)
    try:
        with schema_lock(engine) as conn:
            before = upgrade_on(conn)
            report = _sync(conn, definition)
    except (SQLAlchemyError, SchemaError) as exc:
        _refuse(settings, engine, exc)
    return InitReport(Runtime(settings, definition, Lifecycle(definition), engine), before, report)


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
