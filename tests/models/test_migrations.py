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
from typer.testing import CliRunner

import models.migrations
from cli.main import app
from config import ForumDefinition
from config.settings import Settings
from models import Lifecycle, create_schema, session_scope
from models.db import FIRST_REVISION, schema_status, upgrade_schema
from models.migrations import alembic_config, head_revision, quick_head, render_item, target_metadata
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


# ---------------------------------------------------------------------------- upgrading a database with data
TITLE = "Совместный агропарк · 联合农业园 <b>&"


def _fill_at_first_revision(conn: Connection, definition: ForumDefinition) -> None:
    """Rows in every table of revision 0001, written with 0001's own columns (reflected), as a 0001 install had them."""
    md = MetaData()
    md.reflect(conn)
    sqlite = conn.dialect.name == "sqlite"

    def at(days: int = 0) -> dt.datetime:
        when = T + dt.timedelta(days=days)
        return when.replace(tzinfo=None) if sqlite else when  # what UTCDateTime stores on each backend

    def put(table: str, rows: list[dict[str, Any]]) -> list[int]:
        """Insert rows (ids from the database's own sequence, as a real install has them); returns their ids if any."""
        t = md.tables[table]
        if "id" not in t.c:
            conn.execute(t.insert(), rows)
            return []
        return [conn.execute(t.insert().returning(t.c.id), row).scalar_one() for row in rows]

    head_region = next(m.region for m in definition.members if m.handle == "wang.jianguo")
    put("region", [{"code": c, "name": definition.region_name(c), "country": c.split("-")[0]} for c in definition.regions])
    put("member", [
        {"handle": m.handle, "name": m.name, "email": m.email, "language": m.language, "timezone": m.timezone,
         "region": m.region, "roles": ",".join(m.roles), "notify": m.notify, "active": True}
        for m in definition.members
    ])
    put("working_group", [{"key": g.key, "name": g.name, "chair": g.chair, "active": True} for g in definition.working_groups])
    put("group_membership", [{"group_key": g.key, "member": h} for g in definition.working_groups for h in g.members])
    put("presiding_term", [{"region": t.region, "start": t.start, "end": t.end} for t in definition.presiding_terms])
    (pid,) = put("proposal", [{
        "title": TITLE, "summary": "", "body": "Text\nwith lines", "group": "industry", "author": "zhao.lei",
        "state": "reviewed", "version": 3, "text_version": 1, "round": 1, "state_entered_at": at(), "deadline": at(21),
        "presiding_region": None, "last_progress_at": None, "percent": 0, "created_at": at(-2), "updated_at": at(),
    }])
    events = [("create", "", "drafted", "zhao.lei", {"title": TITLE, "group": "industry"}),
              ("submit", "drafted", "in_review", "zhao.lei", {}),
              ("recommend", "in_review", "reviewed", "kuznetsov", {"round": 1})]
    ev = put("event", [
        {"proposal_id": pid, "seq": i, "action": a, "from_state": f, "to_state": t, "actor": who,
         "at": at(i - 3), "comment": "", "payload": payload}
        for i, (a, f, t, who, payload) in enumerate(events, start=1)
    ])
    put("endorsement_decision", [{
        "proposal_id": pid, "round": 1, "member": "wang.jianguo", "region": head_region, "country": "CN",
        "decision": "endorse", "at": at(),
    }])
    # Not from this proposal's path: only there so that every table of 0001 holds a row.
    put("progress_report", [{"proposal_id": pid, "percent": 10, "note": "site chosen", "actor": "zhao.lei", "at": at()}])
    put("review_cursor", [{"proposal_id": pid, "anchor": at(), "next_at": at(14)}])
    put("review_mark", [{"proposal_id": pid, "anchor": at(-1), "kind": "remind", "step": 0, "at": at(), "event_id": ev[1]}])
    put("delivery", [{
        "event_id": ev[2], "recipient": "wang.jianguo", "email": "w@example.org", "kind": "event", "critical": False,
        "status": "sent", "attempts": 1, "next_attempt_at": at(), "last_error": "", "message_id": "<1@forumflow>",
        "created_at": at(), "sent_at": at(), "digest_id": None, "digest_day": None,
    }])
    put("planned_event", [{"event_id": e, "planned_at": at(), "deliveries": int(e == ev[2])} for e in ev])
    assert pid == 1


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables}


def test_upgrade_from_first_revision_keeps_data_and_the_lifecycle_goes_on(
    empty_db: EmptyDb, definition: ForumDefinition, lifecycle: Lifecycle
) -> None:
    """A 0001 database holding a proposal mid-round is upgraded by init; its rows survive and the round completes."""
    with empty_db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), FIRST_REVISION)
        _fill_at_first_revision(conn, definition)
    counts = _counts(empty_db.engine)

    done = initialise(Settings(database_url=empty_db.url))
    try:
        assert done.before.current == FIRST_REVISION
        assert _version(empty_db.engine) == [head_revision()]
        assert {t: n for t, n in _counts(empty_db.engine).items() if t in counts} == counts
        engine = done.runtime.engine
        with session_scope(engine) as s:
            p = s.get(Proposal, 1)
            assert p is not None
            assert (p.title, p.state, p.version, p.round, p.body) == (TITLE, "reviewed", 3, 1, "Text\nwith lines")
            assert p.deadline == T + dt.timedelta(days=21) and p.deadline.tzinfo is not None
            assert [e.payload for e in s.exec(select(Event).order_by(Event.seq)).scalars()] == [  # type: ignore[call-overload]
                {"title": TITLE, "group": "industry"}, {}, {"round": 1}
            ]
            assert s.get(Member, "wang.jianguo") is not None
        for head in ["deshmukh", "seitkazieva", "toktogulov", "khan.ayesha", "petrov", "rakhimov", "karimov"]:
            with session_scope(engine) as s:
                lifecycle.apply(s, 1, "endorse", head, now=T + dt.timedelta(hours=1))
        with session_scope(engine) as s:
            lifecycle.apply(s, 1, "approve", "petrov", now=T + dt.timedelta(days=1))
        with session_scope(engine) as s:
            p = s.get(Proposal, 1)
            assert p is not None and p.state == "implementing"
            decisions = s.exec(select(EndorsementDecision).where(EndorsementDecision.proposal_id == 1)).scalars().all()  # type: ignore[call-overload]
            assert len(decisions) == 8
            seqs = [e.seq for e in s.exec(select(Event).where(Event.proposal_id == 1).order_by(Event.seq)).scalars()]  # type: ignore[call-overload]
            assert seqs == list(range(1, 3 + 7 + 1 + 1 + 1))  # 3 before, 7 endorsements, consensus, approve
    finally:
        done.runtime.engine.dispose()


def _proposal_indexes(engine: Engine) -> dict[str, set[str]]:
    """The names of the non-unique indexes of the two tables 0008 changed."""
    with engine.connect() as conn:
        found = inspect(conn)
        tables = ("endorsement_decision", "proposal_text")
        return {t: {i["name"] for i in found.get_indexes(t) if not i["unique"]} for t in tables}


def test_0008_drops_the_indexes_a_unique_key_already_gives_and_its_downgrade_brings_them_back(empty_db: EmptyDb) -> None:
    """Lookups of a proposal's decisions and texts go through the unique key; the downgrade restores 0007 exactly."""
    with empty_db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0007")
    assert _proposal_indexes(empty_db.engine) == {
        "endorsement_decision": {"ix_endorsement_decision_proposal_id"}, "proposal_text": {"ix_proposal_text_proposal_id"},
    }
    with empty_db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0008")
    assert _proposal_indexes(empty_db.engine) == {"endorsement_decision": set(), "proposal_text": set()}
    if empty_db.backend == "sqlite":
        with empty_db.engine.connect() as conn:
            for table, key in (("endorsement_decision", "uq_decision_member"), ("proposal_text", "uq_proposal_text_version")):
                query = text(f"EXPLAIN QUERY PLAN SELECT * FROM {table} WHERE proposal_id = 1")
                plan = " ".join(r[-1] for r in conn.execute(query))
                assert "USING INDEX" in plan and "SCAN" not in plan, plan  # the unique key's index, not the whole table
                assert key in {i["name"] for i in inspect(conn).get_unique_constraints(table)}
    with empty_db.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0007")
    assert _proposal_indexes(empty_db.engine) == {
        "endorsement_decision": {"ix_endorsement_decision_proposal_id"}, "proposal_text": {"ix_proposal_text_proposal_id"},
    }


# ---------------------------------------------------------------------------- what each command does with a schema
def test_a_fresh_database_is_created_at_the_newest_revision_in_its_own_schema(empty_db: EmptyDb) -> None:
    """The first command on an empty database creates the schema by migration and loads the definition."""
    rt = open_runtime(Settings(database_url=empty_db.url))
    try:
        assert _version(rt.engine) == [head_revision()]
        with session_scope(rt.engine) as s:
            assert s.get(Member, "zhao.lei") is not None
        if empty_db.schema is not None:  # PostgreSQL: alembic_version lives in the search_path's schema
            with empty_db.engine.connect() as conn:
                where = conn.execute(
                    text("SELECT table_schema FROM information_schema.tables WHERE table_name = 'alembic_version'"
                         " AND table_schema = :s"), {"s": empty_db.schema}
                ).all()
            assert where == [(empty_db.schema,)]
    finally:
        rt.engine.dispose()


def test_a_database_made_before_migrations_counts_as_the_first_revision(empty_db: EmptyDb) -> None:
    """create_all without alembic_version, tables as in 0001: read as 0001; init records it and upgrades."""
    with empty_db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), FIRST_REVISION)
        conn.execute(text("DROP TABLE alembic_version"))
    status = schema_status(empty_db.engine)
    assert (status.current, status.stamped) == (FIRST_REVISION, False)
    assert status.usable == (head_revision() == FIRST_REVISION)
    done = initialise(Settings(database_url=empty_db.url))
    done.runtime.engine.dispose()
    assert _version(empty_db.engine) == [head_revision()]
    assert "before migrations" in done.schema_line() or head_revision() != FIRST_REVISION


def test_tables_without_a_revision_that_match_none_are_refused_even_by_init(empty_db: EmptyDb) -> None:
    """Unversioned tables that are not 0001's (here: a column missing) are left alone, with one line."""
    with empty_db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), FIRST_REVISION)
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("DROP TABLE planned_event"))
    settings = Settings(database_url=empty_db.url)
    for attempt in (open_runtime, initialise):
        with pytest.raises(DatabaseError, match="do not match revision 0001") as caught:
            attempt(settings)
        assert "\n" not in str(caught.value)
    assert "planned_event" not in inspect(empty_db.engine).get_table_names()


SECOND = '''"""Test-only revision: a column added, filled and made NOT NULL (a table copy on SQLite)."""

import sqlalchemy as sa
from alembic import op

revision = "0099"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("proposal") as batch:
        batch.add_column(sa.Column("note", sa.String(length=40), nullable=True))
    op.execute("UPDATE proposal SET note = 'kept ' || title")
    with op.batch_alter_table("proposal") as batch:
        batch.alter_column("note", existing_type=sa.String(length=40), nullable=False, server_default="")


def downgrade() -> None:
    with op.batch_alter_table("proposal") as batch:
        batch.drop_column("note")
'''


@pytest.fixture
def later_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The shipped revisions plus a later one (0099) that copies the proposal table on SQLite."""
    versions = tmp_path / "versions"
    shutil.copytree(models.migrations.LOCATION / "versions", versions, ignore=shutil.ignore_patterns("__pycache__"))
    (versions / "0099_test_note.py").write_text(SECOND.replace("{head}", head_revision()), encoding="utf-8")
    monkeypatch.setattr(models.migrations, "VERSIONS_DIR", versions)
    models.migrations.script_directory.cache_clear()
    yield "0099"
    models.migrations.script_directory.cache_clear()


def test_quick_head_agrees_with_alembic(later_revision: str) -> None:
    """The head read without Alembic is Alembic's head, for the shipped revisions and with a later one added."""
    assert quick_head() == head_revision() == later_revision


def test_quick_head_gives_up_on_a_branch(later_revision: str) -> None:
    """Two revisions after the same one are no plain chain: the quick reading defers to Alembic."""
    versions = models.migrations.VERSIONS_DIR
    (versions / "0098_other.py").write_text(SECOND.replace("0099", "0098").replace("{head}", "0001"), encoding="utf-8")
    assert quick_head() is None


def test_a_database_behind_is_refused_until_init_upgrades_it(
    empty_db: EmptyDb, lifecycle: Lifecycle, request: pytest.FixtureRequest
) -> None:
    """Other commands refuse a schema that is behind with one line; init upgrades it, keeping data and foreign keys."""
    settings = Settings(database_url=empty_db.url)
    first = initialise(settings)
    with session_scope(first.runtime.engine) as s:
        from models.tables import ProposalCreate

        pid = lifecycle.create_proposal(
            session=s, proposal_in=ProposalCreate(group="industry", author="zhao.lei", title="Agro park"), now=T
        ).id
    with session_scope(first.runtime.engine) as s:
        lifecycle.apply(s, pid, "submit", "zhao.lei", now=T)  # type: ignore[arg-type]
    first.runtime.engine.dispose()

    newest = request.getfixturevalue("later_revision")
    with pytest.raises(DatabaseError) as caught:
        open_runtime(settings)
    message = str(caught.value)
    assert f"schema at revision {first.before.head}, newest {newest}" in message
    assert message.endswith("run 'forumflow init' to upgrade it") and "\n" not in message
    cli = CliRunner().invoke(app, ["--db", empty_db.url, "list"], catch_exceptions=False)
    assert (cli.exit_code, cli.stdout, cli.stderr.splitlines()) == (1, "", [f"error: {message}"])

    done = initialise(settings)
    try:
        assert (done.before.current, done.before.state) == (first.before.head, "behind")
        assert done.schema_line() == f"schema upgraded from revision {first.before.head} to {newest}"
        assert _version(empty_db.engine) == [newest]
        with empty_db.engine.connect() as conn:
            assert conn.execute(text("SELECT note FROM proposal")).scalars().all() == ["kept Agro park"]
            assert conn.execute(text("SELECT count(*) FROM event WHERE proposal_id = :p"), {"p": pid}).scalar_one() == 2
        # The copied table still carries its foreign keys and indexes (SQLite rebuilds it in batch mode).
        insp = inspect(empty_db.engine)
        assert {tuple(fk["constrained_columns"]) for fk in insp.get_foreign_keys("proposal")} == {("group",), ("author",)}
        assert {"ix_proposal_state_deadline", "ix_proposal_state"} <= {i["name"] for i in insp.get_indexes("proposal")}
        rt = open_runtime(settings)
        with session_scope(rt.engine) as s:
            lifecycle.apply(s, pid, "recommend", "kuznetsov", now=T)  # type: ignore[arg-type]
        rt.engine.dispose()
    finally:
        done.runtime.engine.dispose()


def test_the_documented_check_command_passes() -> None:
    """`python -m models.migrations check` (README) compares the models with a scratch database at the newest revision."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "models.migrations", "check"], capture_output=True, text=True, timeout=120, check=False
    )
    assert (r.returncode, r.stdout.splitlines()[-1:]) == (0, ["models and migrations agree"]), r.stderr
