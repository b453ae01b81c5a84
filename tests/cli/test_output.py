"""What the CLI prints: user text literally, whole words when piped, hints that point where things are."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cli.demo import prefect_ui_hint
from cli.events import event_note
from notifications.sink import free_port
from tests.cli.conftest import Invoke

BRACKETS = "Seed bank [industry] for [bold]all[/bold] regions"


def test_user_text_with_brackets_is_printed_literally(cli: Invoke) -> None:
    assert cli("init").code == 0
    pid = cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", BRACKETS).stdout.strip()
    assert cli("act", pid, "submit", "--as", "zhao.lei").code == 0
    assert cli("act", pid, "return", "--as", "kuznetsov", "--comment", "Add [red]costs[/red] and [link=x]").code == 0

    for args in (("show", pid), ("list",), ("history", pid)):
        r = cli(*args)
        assert r.code == 0, r.stderr
        if args[0] != "history":
            assert BRACKETS in r.stdout, args
        if args[0] != "list":
            assert "Add [red]costs[/red] and [link=x]" in r.stdout, args


@pytest.mark.slow
def test_piped_demo_keeps_whole_words_and_list_points_at_the_demo_database(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "forumflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORUMFLOW_") and k != "COLUMNS"}
    env |= {"FORUMFLOW_DATA_DIR": str(tmp_path / "data"), "PYTHONIOENCODING": "utf-8"}
    piped = tmp_path / "demo.txt"
    with piped.open("wb") as out:  # stdout is a file, as in `forumflow demo > demo.txt`
        done = subprocess.run([str(exe), "demo", "--no-prefect"], env=env, stdout=out, stderr=subprocess.PIPE, timeout=300,
                              check=False)
    assert done.returncode == 0, done.stderr
    text = piped.read_text(encoding="utf-8")
    assert "#1 Joint agro-industrial park on the Chelyabinsk–Harbin corridor [industry]" in text  # not read as markup
    assert "…" not in text  # no cell cut short at 80 columns
    assert "100% Terminal in operation; first shipments to Harbin." in text

    listed = subprocess.run([str(exe), "list"], env=env, capture_output=True, text=True, timeout=120, check=False)
    demo_db = tmp_path / "data" / "demo.db"
    assert listed.returncode == 0 and "0 proposals" in listed.stdout
    assert listed.stderr == f"the demo's proposals are in {demo_db}: forumflow --db sqlite:///{demo_db} list\n"
    demo_list = subprocess.run([str(exe), "--db", f"sqlite:///{demo_db}", "list"], env=env, capture_output=True, text=True,
                               timeout=120, check=False)
    assert "6 proposals" in demo_list.stdout and demo_list.stderr == ""


def test_an_empty_list_without_a_demo_has_no_hint(cli: Invoke, tmp_path: Path) -> None:
    r = cli("list")
    assert r.code == 0 and "0 proposals" in r.stdout and r.stderr == ""
    (tmp_path / "data" / "demo.db").write_bytes(b"")
    assert "the demo's proposals are in" in cli("list").stderr
    assert cli("list", "--state", "drafted").stderr == ""  # a filter that finds nothing is not a wrong database


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("FORUMFLOW_DISPATCH_INTERVAL_MINUTES", "0", "greater than or equal to 1"),
        ("FORUMFLOW_REVIEW_INTERVAL_MINUTES", "soon", "valid integer"),
        ("FORUMFLOW_SMTP_PORT", "70000", "less than or equal to 65535"),
        ("FORUMFLOW_SMTP_TLS", "ssl", "'none', 'starttls' or 'tls'"),
    ],
)
def test_bad_settings_are_one_line_exit_2_for_every_command(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(variable, value)
    for args in (("serve",), ("list",), ("mail-sink",), ("diagram",), ("review",), ("dispatch",), ("init",)):
        r = cli(*args)
        assert r.code == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith(f"error: {variable}={value}: ") and reason in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and r.stdout == ""


def test_prefect_ui_hint_names_the_prefect_home_in_force_and_a_free_port(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PREFECT_HOME": "/srv/prefect home"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        monkeypatch.setattr("flows.serve.DEFAULT_PORT", busy)
        hint = prefect_ui_hint(env)
    assert hint.startswith("PREFECT_HOME='/srv/prefect home' ")
    port = int(hint.split("--port ", 1)[1].split()[0])
    assert port != busy and hint.endswith(f"→ open http://127.0.0.1:{port}/runs")

    free = free_port()
    monkeypatch.setattr("flows.serve.DEFAULT_PORT", free)
    assert "--port" not in prefect_ui_hint(env) and f"http://127.0.0.1:{free}/runs" in prefect_ui_hint(env)
    assert prefect_ui_hint({"PREFECT_API_URL": "https://prefect.example.org/api"}) == "open https://prefect.example.org/runs"


def test_show_and_history_say_whom_notices_went_to_and_the_percent(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import Settings
    from models.review import sweep
    from models.runtime import open_runtime

    clock = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)
    monkeypatch.setattr("cli.main.now_utc", lambda: clock)
    assert cli("init").code == 0
    at = (clock - dt.timedelta(days=40)).isoformat()  # in review for 40 days: 10 past the 30-day deadline
    pid = cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", "Seed bank", "--at", at).stdout.strip()
    assert cli("act", pid, "submit", "--as", "zhao.lei", "--comment", "See [annex]", "--at", at).code == 0
    rt = open_runtime(Settings())
    try:
        report = sweep(rt.engine, rt.lifecycle, clock)
    finally:
        rt.engine.dispose()
    assert report.escalations == 2  # 10 days past: the chair, then the presiding region
    assert cli("act", pid, "recommend", "--as", "kuznetsov").code == 0
    assert cli("remind", pid, "--as", "kuznetsov").code == 0  # the chair reminds the heads by hand

    monkeypatch.setenv("COLUMNS", "400")  # the heads' sixteen handles on one line of the cell
    history = json.loads(cli("history", pid, "--json").stdout)
    escalations = [e for e in history if e["action"] == "escalate"]
    reminder = next(e for e in history if e["action"] == "remind")
    for args in (("show", pid), ("history", pid)):
        text = cli(*args).stdout
        assert "See [annex]" in text  # a comment, escaped
        for e in escalations:
            assert f"level {e['payload']['level']} → {', '.join(e['payload']['recipients'])}" in text
        assert f"→ {', '.join(reminder['payload']['recipients'])}" in text
        assert "None" not in text


@pytest.mark.parametrize(
    ("action", "comment", "payload", "note"),
    [
        ("report_progress", "Site [A] chosen", {"percent": 30}, "30% Site [A] chosen"),
        ("remind", "", {"offset_days": 7, "recipients": ["kuznetsov", "petrov"]}, "7 d before deadline → kuznetsov, petrov"),
        ("remind", "", {"recipients": ["petrov"]}, "→ petrov"),
        ("escalate", "", {"level": 2, "recipients": ["nurlanov"]}, "level 2 → nurlanov"),
        ("progress_due", "", {"recipients": ["zhao.lei"], "due": "2026-01-01"}, "→ zhao.lei"),
        ("handover", "", {"from_region": "RU-CHE", "to_region": "KZ-55", "recipients": ["nurlanov"]},
         "RU-CHE → KZ-55 → nurlanov"),
        ("approve", "Good", {}, "Good"),
    ],
)
def test_event_note(action: str, comment: str, payload: dict, note: str) -> None:
    assert event_note(action, comment, payload) == note
