"""Time cannot be written backwards, and bad input gets one line and a non-zero exit, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from models.tables import COMMENT_MAX
from tests.cli.conftest import Invoke, Result
from tests.conftest import postgres_schema
from tests.factories import ONE_HEAD_PER_STATE

# The CLI's wall clock here: in Pavlodar Region's presiding term (KZ-55, 2026-2028).
CLOCK = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)
BEYOND_IDS = ("2147483648", "9223372036854775807", "9223372036854775808", "99999999999999999999")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cli(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """``forumflow`` in-process with its wall clock at CLOCK, on a fresh SQLite file or a PostgreSQL schema of its own."""
    monkeypatch.setenv("FORUMFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FORUMFLOW_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr("cli.main.now_utc", lambda: CLOCK)
    runner = CliRunner()

    def invoker(db: list[str]) -> Invoke:
        def invoke(*args: str) -> Result:
            r = runner.invoke(app, [*db, *args], catch_exceptions=False)
            return Result(r.exit_code, r.stdout, r.stderr)

        return invoke

    if request.param != "postgres":
        yield invoker([])
        return
    with postgres_schema() as (_, _, url):
        yield invoker(["--db", url])


def one_line_error(r: Result, code: int) -> str:
    """The refusal's single stderr line (asserting the exit code and that nothing else was printed)."""
    assert r.code == code, (r.code, r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    return r.stderr.strip()


def ok(r: Result) -> str:
    assert r.code == 0, (r.stdout, r.stderr)
    return r.stdout


def view(cli: Invoke, pid: str) -> dict:
    return json.loads(ok(cli("show", pid, "--json")))


def endorsed_proposal(cli: Invoke, at: dt.datetime) -> str:
    """A proposal taken to ``endorsed`` by actions recorded at ``at`` (plus a minute per step)."""
    pid = ok(cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", "Agro park", "--at", at.isoformat())).strip()
    steps = [("submit", "zhao.lei"), ("recommend", "kuznetsov"), *[("endorse", h) for h in ONE_HEAD_PER_STATE]]
    for i, (action, actor) in enumerate(steps, 1):
        ok(cli("act", pid, action, "--as", actor, "--at", (at + dt.timedelta(minutes=i)).isoformat()))
    return pid


def test_review_and_dispatch_refuse_a_time_before_the_newest_event(cli: Invoke, prefect_harness: None) -> None:
    pid = endorsed_proposal(cli, dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC))
    before = view(cli, pid)
    assert (before["state"], before["presiding_region"]) == ("endorsed", "KZ-55")
    newest = before["history"][-1]["at"]

    line = one_line_error(cli("review", "--now", "2022-06-01"), 2)
    assert "2022-06-01T00:00:00+00:00" in line and dt.datetime.fromisoformat(newest).isoformat(timespec="seconds") in line
    line = one_line_error(cli("dispatch", "--now", "2022-06-01T00:00:00Z"), 2)
    assert line.startswith("error: dispatch at 2022-06-01T00:00:00+00:00 is earlier than the newest recorded event")
    assert view(cli, pid) == before  # no back-dated hand-over to RU-CHE, nothing written
    assert json.loads(ok(cli("outbox", "--json"))) == []  # the refused dispatch planned nothing

    # At the newest event's own moment time does not go backwards: both run (no mail server here: dispatch plans only).
    ok(cli("review", "--now", newest))
    r = cli("dispatch", "--now", newest)
    assert "earlier than" not in r.stderr and r.stdout.startswith("planned ")
    assert json.loads(ok(cli("outbox", "--json")))


def test_act_at_records_a_decision_taken_earlier_under_the_term_then_in_force(cli: Invoke) -> None:
    meeting = dt.datetime(2022, 12, 20, 10, 0, tzinfo=dt.UTC)
    pid = endorsed_proposal(cli, meeting - dt.timedelta(days=3))
    v = view(cli, pid)
    # Endorsed in December 2022: the deadline counts from then and RU-CHE (petrov) presides, though the clock says 2026.
    assert v["presiding_region"] == "RU-CHE"
    assert v["deadline"] == (meeting - dt.timedelta(days=3) + dt.timedelta(minutes=10, days=14)).isoformat()
    r = ok(cli("act", pid, "approve", "--as", "petrov", "--at", "2022-12-20T10:00Z"))
    assert r.strip() == f"proposal {pid}: approve by petrov: endorsed → implementing at 2022-12-20 10:00 UTC"
    v = view(cli, pid)
    assert v["state"] == "implementing" and v["history"][-1]["at"] == meeting.isoformat()
    assert v["state_entered_at"] == meeting.isoformat()

    # Not before the proposal's newest event, not after the interface's clock; nothing written either way.
    report = ("act", pid, "report_progress", "--as", "zhao.lei", "--percent", "10", "--at")
    line = one_line_error(cli(*report, "2022-12-20T09:59Z"), 2)
    assert "2022-12-20T09:59:00+00:00 is earlier than its newest event (2022-12-20T10:00:00+00:00)" in line
    line = one_line_error(cli(*report, "2026-06-15T12:01Z"), 2)
    assert line == (
        "error: --at: 2026-06-15T12:01:00+00:00 is in the future (now is 2026-06-15T12:00:00+00:00): "
        "record only what has happened"
    )
    one_line_error(cli("propose", "--group", "trade", "--as", "chen.jing", "--title", "t", "--at", "2027-01-01"), 2)
    one_line_error(cli("act", pid, "complete", "--as", "kuznetsov", "--at", "yesterday"), 2)
    assert view(cli, pid) == v
    assert [p["id"] for p in json.loads(ok(cli("list", "--json")))] == [int(pid)]
    # Without --at the action is recorded at the clock.
    ok(cli("act", pid, "report_progress", "--as", "zhao.lei", "--percent", "10"))
    assert view(cli, pid)["history"][-1]["at"] == CLOCK.isoformat()


@pytest.mark.parametrize("pid", BEYOND_IDS)
def test_ids_beyond_the_id_column_are_not_found(cli: Invoke, pid: str) -> None:
    for args in (("show", pid), ("history", pid), ("act", pid, "submit", "--as", "zhao.lei")):
        assert one_line_error(cli(*args), 4) == f"error: proposal {pid} not found"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("review", "--now", "9999-12-31T23:59:59"), "error: --now: time 9999-12-31T23:59:59+00:00 is outside the years 1970 to"),
        (("review", "--now", "9999-12-31T23:59:59-05:00"), "error: --now: time 9999-12-31T23:59:59-05:00 is outside the years"),
        (("dispatch", "--now", "0001-01-01"), "error: --now: time 0001-01-01T00:00:00+00:00 is outside the years"),
        (("act", "1", "submit", "--as", "zhao.lei", "--at", "1969-12-31T23:59Z"), "error: --at: time 1969-12-31T23:59:00+00:00"),
        (("simulate", "--days", "9999999999"), "error: --start 2022-07-01 --days 9999999999: the simulated span must lie"),
        (("simulate", "--start", "2999-06-01", "--days", "365"), "error: --start 2999-06-01 --days 365: the simulated span"),
    ],
)
def test_unrepresentable_times_are_refused_at_once(cli: Invoke, args: tuple[str, ...], expected: str) -> None:
    ok(cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", "t", "--at", "2026-01-05"))
    began = time.monotonic()
    assert one_line_error(cli(*args), 2).startswith(expected)
    assert time.monotonic() - began < 5  # refused before any flow or task (and its retries) started


def test_a_nul_byte_in_the_body_is_refused_and_nothing_is_created(cli: Invoke, tmp_path: Path) -> None:
    body = tmp_path / "body.md"
    body.write_text("first part\x00second part", encoding="utf-8")
    line = one_line_error(cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", "t", "--body-file", str(body)), 2)
    assert line == "error: --body-file: must not contain a NUL character"
    assert json.loads(ok(cli("list", "--json"))) == []
    assert json.loads(ok(cli("export")))["events"] == []


def test_export_creates_missing_folders_and_refuses_unusable_paths(cli: Invoke, tmp_path: Path) -> None:
    ok(cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", "t"))
    target = tmp_path / "new" / "deeper" / "all.json"
    ok(cli("export", "--out", str(target)))
    assert [p["title"] for p in json.loads(target.read_text(encoding="utf-8"))["proposals"]] == ["t"]
    folder = tmp_path / "csv" / "out"
    ok(cli("export", "--format", "csv", "--out", str(folder)))
    assert sorted(p.name for p in folder.iterdir()) == ["events.csv", "proposals.csv", "texts.csv"]  # no partial files left

    line = one_line_error(cli("export", "--out", str(folder)), 2)
    assert line == f"error: --out {folder} is a folder: --format json writes one file, name it"
    line = one_line_error(cli("export", "--format", "csv", "--out", str(target)), 2)
    assert line == f"error: --out {target} is a file: --format csv writes into a folder"
    line = one_line_error(cli("export", "--out", str(target / "below-a-file.json")), 2)
    assert line.startswith(f"error: --out {target / 'below-a-file.json'}: ")
    assert not (target.parent / ".all.json.partial").exists()


def test_a_data_dir_that_is_a_file_is_one_line(cli: Invoke, tmp_path: Path) -> None:
    afile = tmp_path / "not-a-folder"
    afile.write_text("x", encoding="utf-8")
    assert one_line_error(cli("--data-dir", str(afile), "list"), 2) == f"error: --data-dir: {afile} is a file, not a folder"
    line = one_line_error(cli("--data-dir", str(afile / "data"), "forum"), 2)
    assert line == f"error: --data-dir: {afile} is a file, not a folder"


@pytest.mark.parametrize(
    ("db", "message"),
    [
        ("mysql://root@127.0.0.1/test", "forumflow runs on SQLite (sqlite:///file) and PostgreSQL (postgresql://host/db)"),
        ("postgresql+asyncpg://u@127.0.0.1/test", "postgresql+asyncpg is an asynchronous driver"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite is an asynchronous driver"),
        ("postgresql+psycopg2://u@127.0.0.1/test", "its driver is not installed (No module named 'psycopg2')"),
        ("postgresql+nodriver://u@127.0.0.1/test", "Can't load plugin"),
        ("not a url", "not a database URL"),
        ("sqlite:////proc/forumflow-cannot/x.db", "cannot create the folder /proc/forumflow-cannot for the database"),
    ],
)
def test_a_database_it_cannot_use_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str, message: str) -> None:
    monkeypatch.setenv("FORUMFLOW_DATA_DIR", str(tmp_path / "data"))
    r = CliRunner().invoke(app, ["--db", db, "list"], catch_exceptions=False)
    assert message in one_line_error(Result(r.exit_code, r.stdout, r.stderr), 1)


def test_a_data_dir_that_cannot_be_made_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORUMFLOW_DATA_DIR", "/proc/forumflow-cannot")
    monkeypatch.delenv("FORUMFLOW_DATABASE_URL", raising=False)
    r = CliRunner().invoke(app, ["list"], catch_exceptions=False)
    line = one_line_error(Result(r.exit_code, r.stdout, r.stderr), 1)
    assert line == "error: cannot create the folder /proc/forumflow-cannot for the database: No such file or directory"


def test_a_comment_over_the_limit_is_refused_as_the_api_refuses_it(cli: Invoke) -> None:
    ok(cli("init"))
    pid = ok(cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", "Agro park")).strip()
    ok(cli("act", pid, "submit", "--as", "zhao.lei"))
    before = view(cli, pid)
    line = one_line_error(cli("act", pid, "return", "--as", "kuznetsov", "--comment", "x" * (COMMENT_MAX + 1)), 2)
    assert line == f"error: --comment: at most {COMMENT_MAX} characters (this one has {COMMENT_MAX + 1})"
    assert view(cli, pid) == before
    ok(cli("act", pid, "return", "--as", "kuznetsov", "--comment", "x" * COMMENT_MAX))
