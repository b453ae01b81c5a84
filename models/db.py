"""Engine and session factory, and the schema's revision (Alembic); nothing is created at import time.

A database is *empty* (none of forumflow's tables), *current* (at the newest shipped revision), *behind* (at an
older one: ``forumflow init`` upgrades it) or *unknown* (a revision this code does not ship, or tables that match
no revision). A database made by ``create_all`` before migrations existed has no ``alembic_version``: it counts
as revision 0001 when its tables and columns are exactly those of 0001 (``init`` then stamps it), else as unknown.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import DateTime, String, UniqueConstraint, event, inspect, text
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import configure_mappers, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

from models.errors import ForumflowError

log = logging.getLogger(__name__)

T = TypeVar("T")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite forgets the zone; this puts it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC datetime is required")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

    # SQLite: one function each way instead of this type's step composed with SQLAlchemy's. Every action writes
    # and reads a few of these values; the text is SQLAlchemy's storage format for SQLite ("2021-03-01 09:00:00.000000").
    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        convert = self.process_bind_param

        def process(value: dt.datetime | None) -> str | None:
            stored = convert(value, dialect)
            return None if stored is None else stored.isoformat(" ", "microseconds")

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        parse, convert = dt.datetime.fromisoformat, self.process_result_value

        def process(value: str | None) -> dt.datetime | None:
            return None if value is None else convert(parse(value), dialect)

        return process


def utc_field(**kw: Any) -> Any:
    """A SQLModel field stored as an aware UTC datetime (``UTCDateTime``); keyword arguments as for ``Field``."""
    from sqlmodel import Field

    return Field(sa_type=UTCDateTime, **kw)  # type: ignore[call-overload]


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain PostgreSQL URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class unicode_lower(GenericFunction[str]):
    """``lower()`` of any script (Cyrillic too) on every backend, for case-insensitive text search.

    PostgreSQL's own ``lower`` follows the database's LC_CTYPE (any UTF-8 locale lowers every script);
    SQLite's lowers ASCII only, so SQLite connections get Python's ``str.lower`` as ``ff_lower``.
    """

    type = String()
    name = "unicode_lower"
    inherit_cache = True


SQLITE_LOWER = "ff_lower"


@compiles(unicode_lower)
def _lower(element: unicode_lower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(unicode_lower, "sqlite")
def _lower_sqlite(element: unicode_lower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{SQLITE_LOWER}({compiler.process(element.clauses, **kw)})"


def _py_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# Every SQLite connection's settings, in this order (bench/actions.py gives its bare SQL the same).
# The timeout first: switching a new file to WAL needs a lock that a concurrent process may hold.
SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_PRAGMAS = (f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}", "foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.create_function(SQLITE_LOWER, 1, _py_lower, deterministic=True)
    cur = dbapi_conn.cursor()
    for pragma in SQLITE_PRAGMAS:
        cur.execute(f"PRAGMA {pragma}")
    cur.close()


# A scratch database (``make_engine(..., scratch=True)``) is not synced to disk: the operating system writes it when
# it likes. A crash of the process loses nothing committed; a crash of the machine may lose or corrupt the file.
SCRATCH_PRAGMAS = ("synchronous=OFF",)


def _scratch_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    for pragma in SCRATCH_PRAGMAS:
        cur.execute(f"PRAGMA {pragma}")
    cur.close()
    # sqlite3 begins a transaction only before a write, so a SAVEPOINT could begin (and its RELEASE end) one:
    # leave beginning to SQLAlchemy, which then emits BEGIN itself (_begin), as SQLAlchemy's pysqlite notes advise.
    dbapi_conn.isolation_level = None


def _begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def make_engine(url: str, *, schema: str | None = None, echo: bool = False, scratch: bool = False) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout; PostgreSQL an optional schema.

    ``scratch`` (SQLite only): a throwaway database that one process writes alone (``forumflow simulate``): never
    synced to disk, and every transaction begun with an explicit BEGIN, so that savepoints (``begin_nested``,
    a session joining a connection's transaction with ``create_savepoint``) work. Never for a forum's database;
    and a scratch engine cannot take the schema lock (``create_schema``): make the schema with a plain engine.
    """
    url = normalise_url(url)
    sqlite = url.startswith("sqlite")
    if scratch and not sqlite:
        raise ValueError("only an SQLite database can be a scratch database")
    connect_args: dict[str, Any] = {}
    if sqlite:
        connect_args["check_same_thread"] = False
    elif schema:
        connect_args["options"] = f"-csearch_path={schema}"
    engine = create_engine(url, echo=echo, connect_args=connect_args)
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    if scratch:
        event.listen(engine, "connect", _scratch_pragmas)
        event.listen(engine, "begin", _begin)
    return engine


def is_unique_violation(exc: IntegrityError, constraint: str) -> bool:
    """The error breaks the named unique constraint (PostgreSQL names it; SQLite lists its table's columns)."""
    orig = exc.orig
    name = getattr(getattr(orig, "diag", None), "constraint_name", None)
    if name is not None:
        return bool(name == constraint)
    from models.migrations import target_metadata

    for table in target_metadata().tables.values():
        for c in table.constraints:
            if isinstance(c, UniqueConstraint) and c.name == constraint:
                columns = ", ".join(f"{table.name}.{col.name}" for col in c.columns)
                return f"UNIQUE constraint failed: {columns}" in str(orig)
    return False


def as_loaded(session: Session, model: type[T], values: Mapping[str, Any], *, attach: bool = True) -> T:
    """The row ``values`` (every column, by attribute name) as an instance of ``model`` that ``session`` had loaded.

    For rows read or written with Core statements on the session's connection. An instance already in the
    identity map is kept as a query keeps it: its loaded attributes unchanged, the ones not loaded (expired) taken
    from ``values``. Else a new instance is made without ``__init__`` (no validation: the values are a row), and
    with ``attach`` put in the session with nothing pending, as a query would have left it, without any SQL
    (``make_transient_to_detached``, then ``add``). Without ``attach`` it stays out of the session: for an
    instance only the caller holds, which the session (holding its instances weakly) would drop anyway.
    """
    mapper = inspect(model)
    if not mapper.configured:  # a process whose first use of the ORM this is: instances need configured mappers
        configure_mappers()
    key = mapper.identity_key_from_primary_key([values[c.key] for c in mapper.primary_key])
    existing = session.identity_map.get(key)
    if existing is not None:
        state = inspect(existing)
        for name in state.unloaded & values.keys():
            set_committed_value(existing, name, values[name])
        return existing  # type: ignore[no-any-return]
    instance: T = mapper.class_manager.new_instance()
    instance.__dict__.update(values)
    if attach:
        make_transient_to_detached(instance)
        session.add(instance)
    return instance


def flushed_connection(session: Session) -> Connection:
    """The session's connection, for a Core statement to see what the caller changed in the session, as an ORM
    query would (``autoflush``; nothing to write when the session is clean)."""
    if session.autoflush:
        session.flush()
    return session.connection()


class DriverStatement:
    """A Core statement compiled once for a dialect, run on the driver's own cursor (``for_dialect`` keeps one per
    statement and dialect).

    ``Connection.execute`` looks the compiled form up again on every call (computing the statement's cache key) and
    builds an execution context and a result around the driver's cursor, which costs more than the database's work
    for a small read or a write of a few rows. Here the compiling is done once; each parameter goes through its
    type's bind processor and each column read through its result processor, as SQLAlchemy would (an aware datetime
    becomes what the backend stores, and back). The statement runs in the connection's transaction.

    For the hot paths only: a driver error is the driver's own (not wrapped by SQLAlchemy), and no engine event
    fires, so the web app's write lock (``web.writelock``, which watches statements) does not see a write made
    here: in the web app, read only.
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect, columns: tuple[str, ...] = ()) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=list(columns) or None))
        self.sql = compiled.string
        self.positional = compiled.positional
        names = compiled.positiontup if compiled.positional and compiled.positiontup else list(compiled.binds)
        self.binds = [(name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names]
        # The values the statement carries itself (a literal compared with), used where the caller gives none.
        self.fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        read = getattr(compiled, "_result_columns", None) or []  # (key, name, objects, type) of each column read
        self.results: list[Callable[[Any], Any] | None] = [
            column[3].dialect_impl(dialect).result_processor(dialect, None) for column in read
        ]
        # Values a processor has converted: the same few (a run's moment, a status...) come back row after row.
        self._converted: dict[tuple[str, Any], Any] = {}

    @classmethod
    def for_dialect(cls, statement: ClauseElement, dialect: Dialect, columns: tuple[str, ...] = ()) -> DriverStatement:
        """The statement compiled for ``dialect``, once per process; for an INSERT, of the values ``columns``
        (else of every column of its table)."""
        key = (statement, dialect.name, columns)
        found = _DRIVER_STATEMENTS.get(key)
        if found is None:
            found = _DRIVER_STATEMENTS[key] = cls(statement, dialect, columns)
        return found

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters for one set of ``values`` (keyed by bind name; the statement's own values beside)."""
        if self.fixed:
            values = {**self.fixed, **values}
        bound = [(name, values[name] if p is None else self._convert(name, p, values[name])) for name, p in self.binds]
        return tuple(v for _, v in bound) if self.positional else dict(bound)

    def _convert(self, name: str, process: Callable[[Any], Any], value: Any) -> Any:
        key = (name, value)
        converted = self._converted.get(key, _MISSING)
        if converted is _MISSING:
            converted = process(value)
            if len(self._converted) < 1024:
                self._converted[key] = converted
        return converted

    def first(self, conn: Connection, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row the statement gives for ``values`` in ``conn``'s transaction (its columns processed), or None."""
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, self.parameters(values))
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is None:
            return None
        return tuple(value if p is None else p(value) for p, value in zip(self.results, row, strict=True))

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run the statement once per set of values, in one driver call, in ``conn``'s transaction; the rows it
        changed, as the driver counts them (sqlite3 sums them; -1 where a driver does not tell). A failure discards
        the connection (its transaction is in an unknown state)."""
        try:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            parameters: Any = [self.parameters(r) for r in rows]
            cursor.executemany(self.sql, parameters)
            changed = int(cursor.rowcount)
            cursor.close()
        except BaseException:
            conn.invalidate()
            raise
        return changed


_MISSING = object()
_DRIVER_STATEMENTS: dict[tuple[ClauseElement, str, tuple[str, ...]], DriverStatement] = {}


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# ---------------------------------------------------------------------------- schema revisions
FIRST_REVISION = "0001"
# pg_advisory_xact_lock(key, hashtext(schema)): one schema lock per PostgreSQL schema.
_PG_LOCK_KEY = 0x0F0F10
# How long a second init waits for the first on PostgreSQL (SQLite waits for its busy timeout, 10 s).
LOCK_TIMEOUT_SECONDS = 120


class SchemaError(ForumflowError):
    """The database's schema is not the one this code needs; the message says what to do."""

    exit_code = 1


SchemaState = Literal["empty", "current", "behind", "unknown"]


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against the shipped migrations."""

    state: SchemaState
    current: str | None  # the revision of the database (0001 for a matching database without alembic_version)
    head: str  # the newest shipped revision
    stamped: bool  # alembic_version records ``current``
    detail: str = ""  # why the state is unknown

    @property
    def usable(self) -> bool:
        """Commands other than ``init`` may work on it."""
        return self.state == "current"

    def describe(self) -> str:
        """One phrase for a person."""
        if self.state == "empty":
            return "no schema yet"
        if self.state == "unknown":
            return self.detail
        unstamped = " (made before migrations, no alembic_version)" if not self.stamped else ""
        return f"schema at revision {self.current}{unstamped}, newest {self.head}"


@cache
def _revision_tables(revision: str) -> dict[str, frozenset[str]]:
    """Tables and their columns at ``revision``, read from a scratch in-memory SQLite database migrated to it."""
    from alembic import command

    from models.migrations import alembic_config

    scratch = make_engine("sqlite://")
    try:
        with scratch.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
            insp = inspect(conn)
            return {
                t: frozenset(c["name"] for c in insp.get_columns(t)) for t in insp.get_table_names() if t != "alembic_version"
            }
    finally:
        scratch.dispose()


def _our_tables() -> set[str]:
    from models.migrations import target_metadata

    return set(target_metadata().tables)


def _quick_current(conn: Connection) -> SchemaStatus | None:
    """The status of a database stamped with the newest revision, found without importing Alembic; else None.

    Every command opens the database through ``schema_status``; Alembic and its revision scripts take a tenth of a
    second to load, so the common case (one recorded revision, the newest) is read with one plain query.
    """
    from models.migrations import quick_head

    head = quick_head()
    if head is None or not inspect(conn).has_table("alembic_version"):
        return None
    recorded = [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]
    return SchemaStatus("current", head, head, True) if recorded == [head] else None


def schema_status(bind: Engine | Connection) -> SchemaStatus:
    """The database's revision against the newest shipped one (no lock taken, nothing written)."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return schema_status(conn)
    if (quick := _quick_current(bind)) is not None:
        return quick
    from alembic.runtime.migration import MigrationContext

    from models.migrations import head_revision, script_directory

    head = head_revision()
    heads = MigrationContext.configure(bind).get_current_heads()
    if len(heads) > 1:
        return SchemaStatus("unknown", None, head, True, f"several schema revisions recorded ({', '.join(heads)})")
    if heads:
        current = heads[0]
        if current == head:
            return SchemaStatus("current", current, head, True)
        known = {rev.revision for rev in script_directory().walk_revisions()}
        if current in known:
            return SchemaStatus("behind", current, head, True)
        return SchemaStatus(
            "unknown", current, head, True, f"schema revision {current} is not one this forumflow knows (newest {head})"
        )
    present = set(inspect(bind).get_table_names())
    if not present:  # no table at all: empty, without migrating a scratch database to revision 0001 to see
        return SchemaStatus("empty", None, head, False)
    first = _revision_tables(FIRST_REVISION)
    if not present & (set(first) | _our_tables()):
        return SchemaStatus("empty", None, head, False)
    insp = inspect(bind)
    matches = all(t in present and frozenset(c["name"] for c in insp.get_columns(t)) == cols for t, cols in first.items())
    if not matches:
        return SchemaStatus(
            "unknown", None, head, False,
            f"tables without a schema revision that do not match revision {FIRST_REVISION}: migrate or recreate by hand",
        )
    return SchemaStatus("current" if head == FIRST_REVISION else "behind", FIRST_REVISION, head, False)


@contextmanager
def schema_lock(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the database's schema lock, committed at the end.

    PostgreSQL: a transaction-level advisory lock per schema (``search_path``). SQLite: ``BEGIN IMMEDIATE``, which
    holds the one write lock (other writers wait up to the busy timeout); foreign keys are off meanwhile, as SQLite
    asks for schema changes that copy a table (Alembic batch mode), and checked before the commit.
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: set it before
            conn.commit()
        try:
            with conn.begin():
                if sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                elif conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'")
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key, hashtext(coalesce(current_schema(), '')))"),
                        {"key": _PG_LOCK_KEY},
                    )
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:
                        raise SchemaError(f"foreign key broken in table {broken[0]} (row {broken[1]}): nothing changed")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def upgrade_on(conn: Connection, status: SchemaStatus | None = None) -> SchemaStatus:
    """Bring the schema on ``conn`` (inside schema_lock) to the newest revision; returns the status before.

    An unversioned database matching 0001 is stamped 0001 first; an unknown one raises SchemaError.
    """
    from alembic import command

    from models.migrations import alembic_config

    before = status or schema_status(conn)
    if before.state == "unknown":
        raise SchemaError(f"{before.detail}")
    cfg = alembic_config(conn)
    if before.current is not None and not before.stamped:
        log.info("stamping a database made before migrations as revision %s", before.current)
        command.stamp(cfg, before.current)
    if before.state != "current":
        log.info("upgrading the schema from %s to %s", before.current or "nothing", before.head)
        command.upgrade(cfg, "head")
    return before


def upgrade_schema(engine: Engine) -> SchemaStatus:
    """Upgrade the database to the newest revision under the schema lock; returns the status before."""
    with schema_lock(engine) as conn:
        return upgrade_on(conn)


def create_schema(engine: Engine) -> None:
    """Bring a database to the newest revision; an empty one quickly (create_all, then stamp the newest revision).

    Equivalent to upgrade_schema, because the models and the migrations agree (tests/models/test_migrations.py).
    """
    from alembic.runtime.migration import MigrationContext

    from models.migrations import script_directory, target_metadata

    with schema_lock(engine) as conn:
        status = schema_status(conn)
        if status.state != "empty":
            upgrade_on(conn, status)
            return
        target_metadata().create_all(conn)
        MigrationContext.configure(conn).stamp(script_directory(), "head")
