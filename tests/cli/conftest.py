"""CLI fixtures: an isolated data dir and a runner that invokes the real app."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

Invoke = Callable[..., "Result"]


class Result:
    """Exit code and output of one invocation."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """Run ``forumflow`` in-process against a fresh SQLite database in tmp_path."""
    monkeypatch.setenv("FORUMFLOW_DATA_DIR", str(tmp_path / "data"))
    # Commands that run flows export the settings in force into os.environ: restore them after the test.
    for key in ("FORUMFLOW_DATABASE_URL", "FORUMFLOW_FORUM_FILE"):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        r = runner.invoke(app, list(args), catch_exceptions=False, env=dict(os.environ))
        return Result(r.exit_code, r.stdout, r.stderr)

    # Prefect, once imported by a command, puts its console handler on the root logger with the stderr of the
    # moment: here the runner's captured stream, closed after the command. Later tests must not log into it.
    root = logging.getLogger()
    before = list(root.handlers)
    yield invoke
    for handler in [h for h in root.handlers if h not in before]:
        root.removeHandler(handler)
