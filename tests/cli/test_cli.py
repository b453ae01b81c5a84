"""The forumflow CLI end to end: a proposal from drafted to implementing, refusals, reads, exports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import mailbox
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke
from tests.demo_checks import check_demo

# The CLI's wall clock in these tests: inside Pavlodar Region's presiding term (KZ-55, 2026-2028), whatever the real date.
CLOCK = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    """Fix the CLI's wall clock at CLOCK (the interface reads it once per command; logic receives it as ``now``)."""
    monkeypatch.setattr("cli.main.now_utc", lambda: CLOCK)
    return CLOCK


def state_of(cli: Invoke, pid: str) -> dict:
    r = cli("show", pid, "--json")
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)


def test_init_is_idempotent(cli: Invoke) -> None:
    first = cli("init")
    assert first.code == 0 and "37 added" in first.stdout
    second = cli("init")
    assert second.code == 0 and "0 added, 37 updated" in second.stdout


def test_chair_heads_and_presiding_region_take_a_proposal_to_implementing(cli: Invoke, clock: dt.datetime) -> None:
    cli("init")
    r = cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", "Joint agro park", "--summary", "Cold chain")
    assert r.code == 0, r.stderr
    pid = r.stdout.strip()
    assert pid.isdigit()

    def refused(*args: str, code: int = 3) -> str:
        before = state_of(cli, pid)
        res = cli(*args)
        assert res.code == code, (args, res.stdout, res.stderr)
        assert state_of(cli, pid) == before  # nothing changed
        assert res.stderr.count("\n") == 1  # one line
        return res.stderr

    assert "allowed now: submit by zhao.lei" in refused("act", pid, "recommend", "--as", "kuznetsov")
    assert cli("act", pid, "submit", "--as", "zhao.lei").code == 0
    assert "may not recommend their own proposal" in refused("act", pid, "recommend", "--as", "zhao.lei")
    assert "only the chair of working group industry (kuznetsov)" in refused("act", pid, "recommend", "--as", "tursunov")
    assert "requires a comment" in refused("act", pid, "return", "--as", "kuznetsov", code=2)
    assert cli("act", pid, "recommend", "--as", "kuznetsov").code == 0

    view = state_of(cli, pid)
    assert view["state"] == "reviewed" and view["deadline"]
    endorse = next(a for a in view["allowed"] if a["action"] == "endorse")
    assert "petrov" in endorse["actors"] and "kuznetsov" not in endorse["actors"]
    assert "heads of the participating regions" in refused("act", pid, "endorse", "--as", "kuznetsov")
    for head in ["wang.jianguo", "deshmukh", "seitkazieva", "toktogulov", "khan.ayesha", "petrov", "rakhimov"]:
        assert cli("act", pid, "endorse", "--as", head).code == 0
    assert "already decided" in refused("act", pid, "endorse", "--as", "petrov")
    last = cli("act", pid, "endorse", "--as", "karimov")
    assert last.code == 0 and "consensus by system: reviewed → endorsed" in last.stdout

    # On the fixed clock (2026) Pavlodar Region presides (third term of the shipped forum): its head approves.
    view = state_of(cli, pid)
    assert view["presiding_region"] == "KZ-55"
    approve = next(a for a in view["allowed"] if a["action"] == "approve")
    assert approve["actors"] == ["nurlanov"]
    assert "presiding region KZ-55" in refused("act", pid, "approve", "--as", "petrov")
    stale = refused("act", pid, "approve", "--as", "nurlanov", "--expected-version", "99", code=5)
    assert f"proposal {pid} changed since it was read (version {view['version']}, expected 99)" in stale
    assert cli("act", pid, "approve", "--as", "nurlanov", "--expected-version", str(view["version"])).code == 0
    assert cli("act", pid, "report_progress", "--as", "zhao.lei", "--percent", "40", "--comment", "site chosen").code == 0

    view = state_of(cli, pid)
    assert view["state"] == "implementing" and view["percent"] == 40
    assert {e["at"] for e in view["history"]} == {CLOCK.isoformat()}  # every action at the CLI's clock
    assert [e["action"] for e in view["history"]][:3] == ["create", "submit", "recommend"]
    assert view["history"][-1]["payload"] == {"percent": 40, "text_version": 1}
    assert {a["action"] for a in view["allowed"]} == {"report_progress", "complete"}
    assert "40% site chosen" in cli("show", pid).stdout  # the percent, as the demo's timeline shows it

    hist = cli("history", pid, "--json")
    assert [e["seq"] for e in json.loads(hist.stdout)] == list(range(1, view["version"] + 1))
    listed = json.loads(cli("list", "--state", "implementing", "--json").stdout)
    assert [p["id"] for p in listed] == [int(pid)]
    assert json.loads(cli("list", "--group", "trade", "--json").stdout) == []
    assert json.loads(cli("list", "--overdue", "--json").stdout) == []


def test_list_overdue_shows_only_open_proposals_past_their_deadline(cli: Invoke, clock: dt.datetime) -> None:
    def submitted(title: str, at: dt.datetime) -> int:
        pid = cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", title, "--at", at.isoformat()).stdout.strip()
        assert cli("act", pid, "submit", "--as", "zhao.lei", "--at", at.isoformat()).code == 0
        return int(pid)

    # In review for 30 days: one submitted 31 days before the clock (overdue), one 29 days before (not yet).
    late = submitted("Late", clock - dt.timedelta(days=31))
    in_time = submitted("In time", clock - dt.timedelta(days=29))
    cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", "Draft, no deadline", "--at", "2026-01-05")
    listed = json.loads(cli("list", "--overdue", "--json").stdout)
    assert [(p["id"], p["overdue"]) for p in listed] == [(late, True)]
    flags = {p["id"]: p["overdue"] for p in json.loads(cli("list", "--json").stdout)}
    assert flags == {late: True, in_time: False, in_time + 1: False}
    assert state_of(cli, str(late))["overdue"] and not state_of(cli, str(in_time))["overdue"]
    assert "⚠" in cli("list", "--overdue").stdout


def test_not_found_and_usage_errors(cli: Invoke) -> None:
    assert cli("show", "42").code == 4
    assert cli("history", "42").code == 4
    assert cli("act", "42", "submit", "--as", "zhao.lei").code == 4
    r = cli("propose", "--group", "space", "--as", "zhao.lei", "--title", "x")  # bad input, as for list --group space
    assert r.code == 2 and r.stderr.startswith("error: --group: unknown working group 'space'; groups: industry, ")
    assert cli("list", "--group", "space").stderr == r.stderr
    r = cli("propose", "--group", "industry", "--as", "petrov", "--title", "x")
    assert r.code == 3 and "not a member of working group industry" in r.stderr
    assert cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", "").code == 2
    assert cli("list", "--state", "limbo").code == 2
    assert cli("act", "1", "submit").code == 2  # --as missing
    assert cli("export", "--format", "xml").code == 2
    assert json.loads(cli("list", "--json").stdout) == []  # nothing was created by the refusals


def test_bad_definition_is_one_line_exit_2(cli: Invoke, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("forum: {key: x, name: X}\n", encoding="utf-8")
    r = cli("--forum", str(bad), "forum")
    assert r.code == 2
    assert r.stderr.startswith(f"error: {bad}: member_states: required key is missing")
    assert "Traceback" not in r.stderr + r.stdout


def test_forum_summary_diagram_and_export(cli: Invoke, tmp_path: Path) -> None:
    data = json.loads(cli("forum", "--json").stdout)
    assert data["presiding_terms"][0] == {"region": "RU-CHE", "start": "2020-10-29", "end": "2022-12-31", "deputy": "lebedeva"}
    assert {g["key"] for g in data["working_groups"]} >= {"industry", "trade"}
    body = tmp_path / "body.md"
    body.write_text("Полный текст предложения", encoding="utf-8")
    pid = cli("propose", "--group", "trade", "--as", "chen.jing", "--title", "单一窗口", "--body-file", str(body)).stdout.strip()
    assert state_of(cli, pid)["body"] == "Полный текст предложения"
    cli("act", pid, "submit", "--as", "chen.jing")

    diagram = cli("diagram").stdout
    assert diagram.startswith("stateDiagram-v2") and "in_review --> reviewed: recommend (group_chair)" in diagram

    exported = json.loads(cli("export").stdout)
    assert [e["action"] for e in exported["events"]] == ["create", "submit"]
    assert exported["proposals"][0]["title"] == "单一窗口"
    rows = list(csv.DictReader(io.StringIO(cli("export", "--format", "csv", "--table", "proposals").stdout)))
    assert rows[0]["state"] == "in_review"
    out = tmp_path / "export"
    assert cli("export", "--format", "csv", "--out", str(out)).code == 0
    assert (out / "events.csv").read_text(encoding="utf-8").count("\n") == 3
    assert cli("export", "--format", "csv").code == 2


def test_demo_tells_the_story_and_leaves_mail_in_three_languages(cli: Invoke, tmp_path: Path) -> None:
    r = cli("demo", "--no-prefect")
    assert r.code == 0, r.stderr
    check_demo(tmp_path / "data" / "demo.db", r.stdout)
    maildir = tmp_path / "data" / "demo-maildir"
    messages = list(mailbox.Maildir(maildir, create=False))
    languages = {m["Content-Language"] for m in messages}
    assert languages == {"en", "ru", "zh"}
    assert f"{len(messages)} mails delivered" in r.stdout
    # A second run starts fresh: the same story, the same number of mails.
    again = cli("demo", "--no-prefect")
    assert again.code == 0 and len(list(mailbox.Maildir(maildir, create=False))) == len(messages)


# Heavy packages that propose/act/show never need: importing any of them costs the command its start-up time.
NOT_ON_ACT_PATH = ("prefect", "fastapi", "starlette", "uvicorn", "web", "notifications", "jinja2", "babel", "pycountry",
                   "alembic", "mako", "aiosmtplib", "httpx", "models.auth", "models.tokens")
# ... and what propose and act need no more either: they print plain lines (rich is for tables), take the definition
# kept validated in the data dir (no YAML parser), and no command module loads the outbox's table on import.
NOT_ON_PROPOSE_OR_ACT = (*NOT_ON_ACT_PATH, "rich", "yaml", "models.outbox", "models.review", "models.queries")


@pytest.mark.slow
def test_console_script_act_path_does_not_import_prefect(tmp_path: Path) -> None:
    """propose, act and show import none of the heavy packages (web, mail, flows, migrations, ISO databases).

    The database is made first by ``init`` in its own process (creating a schema does need Alembic), which
    (``list``) also keeps the validated definition in the data dir.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUMFLOW_")} | {"FORUMFLOW_DATA_DIR": str(tmp_path / "data")}
    made = subprocess.run([sys.executable, "-c", "from cli.main import app\nfor a in (['init'], ['list']):\n"
                           "    try:\n        app(a)\n    except SystemExit as e:\n        assert e.code in (0, None)"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert made.returncode == 0, made.stderr
    code = (
        "import sys\n"
        "from cli.main import app\n"
        "def run(*args):\n"
        "    try:\n"
        "        app(list(args))\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), e.code\n"
        "def loaded(names):\n"
        "    return sorted(m for m in sys.modules if m in names or m.split('.')[0] in names)\n"
        "run('propose', '--group', 'industry', '--as', 'zhao.lei', '--title', 't')\n"
        "run('act', '1', 'submit', '--as', 'zhao.lei')\n"
        f"print('propose, act:', loaded({NOT_ON_PROPOSE_OR_ACT!r}))\n"
        "run('show', '1')\n"
        f"print('and show:', loaded({NOT_ON_ACT_PATH!r}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "proposal 1: submit by zhao.lei: drafted → in_review" in lines
    assert "propose, act: []" in lines and lines[-1] == "and show: []"


@pytest.mark.slow
def test_exit_codes_through_the_installed_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "forumflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUMFLOW_")} | {"FORUMFLOW_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=120, check=False)

    assert run("propose", "--group", "industry", "--as", "zhao.lei", "--title", "t").stdout.strip() == "1"
    assert run("act", "1", "approve", "--as", "petrov").returncode == 3
    assert run("show", "7").returncode == 4
    assert run("act", "1", "submit", "--as", "zhao.lei", "--expected-version", "5").returncode == 5
    assert run("act", "1").returncode == 2
    assert run("act", "1", "submit", "--as", "zhao.lei").returncode == 0
