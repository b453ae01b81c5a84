"""The rules through the CLI, on SQLite and PostgreSQL: nobody acts as the system, usage errors, deputies, terms."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.cli.conftest import Invoke, Result
from tests.conftest import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cli_db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """``forumflow`` in-process on a fresh SQLite file, or on a PostgreSQL schema of its own."""
    monkeypatch.setenv("FORUMFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        r = runner.invoke(app, list(args), catch_exceptions=False, env=dict(os.environ))
        return Result(r.exit_code, r.stdout, r.stderr)

    if request.param == "sqlite":
        monkeypatch.delenv("FORUMFLOW_DATABASE_URL", raising=False)
        yield invoke
        return
    with postgres_schema() as (_, _, url):
        monkeypatch.setenv("FORUMFLOW_DATABASE_URL", url)
        yield invoke


def show(cli: Invoke, pid: str) -> dict:
    r = cli("show", pid, "--json")
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)


def propose(cli: Invoke, group: str, author: str) -> str:
    r = cli("propose", "--group", group, "--as", author, "--title", "Cold chain corridor")
    assert r.code == 0, r.stderr
    return r.stdout.strip()


def refused(cli: Invoke, pid: str, *args: str, code: int) -> str:
    before = show(cli, pid)
    r = cli("act", pid, *args)
    assert r.code == code, (args, r.stdout, r.stderr)
    assert show(cli, pid) == before  # nothing changed
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    return r.stderr


def test_nobody_acts_as_the_system(cli_db: Invoke) -> None:
    pid = propose(cli_db, "industry", "zhao.lei")
    assert cli_db("act", pid, "submit", "--as", "zhao.lei").code == 0
    assert cli_db("act", pid, "recommend", "--as", "kuznetsov").code == 0
    # In the round, before its deadline and with no endorsement: consensus or silence would end it at once.
    for action in ("consensus", "silence", "endorse", "withdraw"):
        message = refused(cli_db, pid, action, "--as", "system", code=3)
        assert "nobody may act as 'system'" in message
    assert "only the system (scheduled review) may" in refused(cli_db, pid, "silence", "--as", "petrov", code=3)
    assert show(cli_db, pid)["state"] == "reviewed"


def test_an_unknown_action_is_a_usage_error(cli_db: Invoke) -> None:
    pid = propose(cli_db, "industry", "zhao.lei")
    message = refused(cli_db, pid, "fly", "--as", "zhao.lei", code=2)
    assert message.startswith("error: unknown action 'fly'; actions: submit, recommend, return")
    assert refused(cli_db, pid, "fly", "--as", "system", code=2).startswith("error: unknown action 'fly'")


def test_a_chairs_own_proposal_goes_to_the_deputy_chair(cli_db: Invoke) -> None:
    pid = propose(cli_db, "industry", "kuznetsov")
    assert cli_db("act", pid, "submit", "--as", "kuznetsov").code == 0
    recommend = next(a for a in show(cli_db, pid)["allowed"] if a["action"] == "recommend")
    assert recommend["actors"] == ["nurlanova"]
    plain = cli_db("show", pid)
    assert "recommend │ nurlanova" in plain.stdout and "nobody" not in plain.stdout
    assert "recommend by nurlanova" in refused(cli_db, pid, "recommend", "--as", "kuznetsov", code=3)
    assert cli_db("act", pid, "recommend", "--as", "nurlanova").code == 0
    assert show(cli_db, pid)["state"] == "reviewed"


def test_forum_names_deputies_and_the_end_of_the_presiding_terms(cli_db: Invoke) -> None:
    r = cli_db("forum")
    assert r.code == 0, r.stderr
    assert "no presiding term after 2028-12-31: add one to the forum definition" in r.stdout
    assert "lebedeva" in r.stdout and "nurlanova" in r.stdout
    data = json.loads(cli_db("forum", "--json").stdout)
    assert data["presiding_gaps"] == [
        {"from": "2029-01-01", "to": None, "message": "no presiding term after 2028-12-31: add one to the forum definition"}
    ]
    industry = next(g for g in data["working_groups"] if g["key"] == "industry")
    assert (industry["chair"], industry["deputy_chair"]) == ("kuznetsov", "nurlanova")


def test_a_definition_with_a_system_member_is_refused(cli_db: Invoke, tmp_path: Path) -> None:
    from config import DEFAULT_FORUM_FILE

    bad = tmp_path / "forum.yaml"
    bad.write_text(DEFAULT_FORUM_FILE.read_text(encoding="utf-8").replace("{handle: secretariat,", "{handle: system,"),
                   encoding="utf-8")
    r = cli_db("--forum", str(bad), "init")
    assert r.code == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith(f"error: {bad}: members[36].handle: 'system' is reserved for the scheduled review")
