"""What keeps a short command short: one command built, plain lines without rich, the collector paused for the imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app, app_for, command_named
from tests.cli.conftest import Invoke


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["act", "1", "submit"], "act"),
        (["--db", "sqlite:///x.db", "act", "1"], "act"),
        (["--data-dir", "d", "--forum", "f.yaml", "show", "1"], "show"),
        (["--db=sqlite:///x.db", "list"], "list"),
        (["outbox", "retry"], "outbox"),
        (["--help"], None),
        ([], None),
        (["--db"], None),
        (["--", "act"], "act"),
    ],
)
def test_the_command_named_by_the_arguments(args: list[str], name: str | None) -> None:
    assert command_named(args) == name


def test_one_command_is_built_for_a_known_name_and_every_one_otherwise() -> None:
    one = app_for(["--db", "sqlite:///x.db", "act", "1", "submit"])
    assert [c.callback.__name__ for c in one.registered_commands if c.callback] == ["act"]
    assert one.registered_callback is app.registered_callback
    assert [g.name for g in app_for(["outbox", "retry"]).registered_groups] == ["outbox"]
    assert [c.name for c in app_for(["list"]).registered_commands] == ["list"]
    for args in (["--help"], [], ["no-such-command"], ["act-typo"]):
        assert app_for(args) is app


@pytest.mark.parametrize(
    "args",
    [
        ["act", "--help"],
        ["act", "1"],  # a usage error: exit 2 and click's message
        ["--db", "sqlite:///nowhere/x.db", "show", "--help"],
        ["outbox", "--help"],
        ["outbox", "retry", "--help"],
        ["web-link", "--help"],
        ["list", "--nope"],
    ],
)
def test_one_command_answers_as_the_whole_app_does(args: list[str]) -> None:
    runner = CliRunner()
    whole = runner.invoke(app, args, prog_name="forumflow")
    one = runner.invoke(app_for(args), args, prog_name="forumflow")
    assert (one.exit_code, one.stdout, one.stderr) == (whole.exit_code, whole.stdout, whole.stderr)
    assert one.stdout or one.stderr


def test_help_lists_every_command_through_the_entry_point(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", "from cli.entry import main; main()", "--help"],
                       capture_output=True, text=True, timeout=60, check=False,
                       env=dict(os.environ, COLUMNS="200", FORUMFLOW_DATA_DIR=str(tmp_path)))
    assert r.returncode == 0, r.stderr
    for name in ("act", "propose", "show", "list", "review", "serve", "dispatch", "outbox", "demo", "simulate"):
        assert f" {name} " in r.stdout, name


def test_errors_and_action_lines_print_user_text_literally(cli: Invoke) -> None:
    assert cli("propose", "--group", "industry", "--as", "zhao.lei", "--title", "t", "--at", "2026-01-01T08:00:00Z").code == 0
    r = cli("act", "1", ":smile:", "--as", "zhao.lei")  # rich would have printed an emoji for :smile:
    assert r.code == 2 and r.stderr.startswith("error: unknown action ':smile:';")
    r = cli("act", "1", "submit", "--as", "[b]who[/b]")
    assert r.code == 4 and r.stderr == "error: member '[b]who[/b]' not found\n"
    r = cli("act", "1", "submit", "--as", "zhao.lei", "--at", "2026-01-01T09:00:00Z")
    assert r.code == 0 and r.stdout == "proposal 1: submit by zhao.lei: drafted → in_review at 2026-01-01 09:00 UTC\n"


def test_the_entry_point_runs_the_command_with_the_collector_on() -> None:
    code = (
        "import gc\n"
        "import cli.main\n"
        "gc.collect(); gc.unfreeze()\n"
        "cli.main.main = lambda: print(gc.isenabled(), gc.get_freeze_count() > 0)\n"
        "from cli.entry import main\n"
        "main()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert r.stdout.split() == ["True", "True"]


def test_the_console_script_is_the_entry_point() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["scripts"]["forumflow"] == "cli.entry:main"
