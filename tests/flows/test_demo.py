"""The demo runs its review flow through Prefect: every review run is a flow run in Prefect's history."""

from __future__ import annotations

import asyncio
import datetime as dt
import mailbox
import os
import re
import shlex
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from cli.demo import run_demo
from config import ForumDefinition, Settings
from models.runtime import open_runtime
from tests.demo_checks import check_demo
from web.app import create_app


async def _review_runs() -> tuple[int, int]:
    """Review flow runs in Prefect's history: (all, completed)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )

    review = FlowFilter(name=FlowFilterName(any_=["review"]))
    completed = FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Completed"])))
    async with get_client() as client:
        return (
            await client.count_flow_runs(flow_filter=review),
            await client.count_flow_runs(flow_filter=review, flow_run_filter=completed),
        )


@pytest.mark.slow
def test_demo_runs_the_review_flow_through_prefect(
    tmp_path: Path, definition: ForumDefinition, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo exports its settings to the environment for flow runs; setenv first so teardown restores them.
    for var in ("FORUMFLOW_DATABASE_URL", "FORUMFLOW_FORUM_FILE", "FORUMFLOW_DATA_DIR"):
        monkeypatch.setenv(var, os.environ.get(var, ""))
        monkeypatch.delenv(var)
    before = asyncio.run(_review_runs())
    console = Console(record=True, width=200)
    run_demo(Settings(data_dir=tmp_path / "data"), definition, console, prefect=True)
    text = console.export_text()
    after = asyncio.run(_review_runs())
    ran = after[0] - before[0]
    assert ran > 10
    assert check_demo(tmp_path / "data" / "demo.db", text) == ran
    assert after[1] - before[1] == ran
    assert "#1 Joint agro-industrial park on the Chelyabinsk–Harbin corridor [industry]" in text  # not read as markup
    # The UI hint names the Prefect home in force (the test session's), not <data dir>/prefect.
    assert f"PREFECT_HOME={shlex.quote(os.environ['PREFECT_HOME'])} " in text
    maildir = mailbox.Maildir(tmp_path / "data" / "demo-maildir", create=False)
    assert {m["Content-Language"] for m in maildir} == {"en", "ru", "zh"}
    check_web_hint(text, tmp_path / "data" / "demo.db")


def check_web_hint(text: str, db: Path) -> None:
    """The demo ends with the command to browse its database and a sign-in link for a chair, valid against the wall clock."""
    hint = re.search(
        r"Browse it in the web app: forumflow --db (sqlite:///\S+) web .+ within 24 hours, .+ for Николай Кузнецов "
        r"\(chair of Industrial production and agriculture\): (http://127\.0\.0\.1:8000/sign-in/continue\?token=[\w-]+)",
        text,
    )
    assert hint, text[-2000:]
    assert hint.group(1) == f"sqlite:///{db}"
    runtime = open_runtime(Settings(database_url=hint.group(1), data_dir=db.parent))
    link = hint.group(2)
    now = dt.datetime.now(dt.UTC)
    try:
        late = TestClient(create_app(runtime=runtime, clock=lambda: now + dt.timedelta(hours=24, minutes=5)))
        assert late.get(link).status_code == 410  # expired a day after the demo, by the wall clock
        browser = TestClient(create_app(runtime=runtime, clock=lambda: now + dt.timedelta(hours=23)),
                             base_url="http://127.0.0.1:8000", follow_redirects=False)
        page = browser.get(link)
        assert page.status_code == 200 and "Continue as Николай Кузнецов" in page.text
        form = {"token": link.split("token=")[1], "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]}  # type: ignore[index]
        assert browser.post("/sign-in/continue", data=form).status_code == 303
        inbox = browser.get("/")
        assert inbox.status_code == 200 and "Network of seed-testing laboratories" in inbox.text  # his implementing measure
    finally:
        runtime.engine.dispose()


@pytest.mark.slow
def test_demo_as_set_up_runs_its_review_flows_on_a_temporary_server(tmp_path: Path) -> None:
    """``forumflow demo`` with no Prefect configured (the README's set-up command): a temporary server in the data dir."""
    import sqlite3
    import subprocess
    import sys

    from notifications.sink import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FORUMFLOW_"))}
    env |= {"COLUMNS": "200", "FORUMFLOW_SMTP_PORT": str(free_port()), "DO_NOT_TRACK": "1"}
    r = subprocess.run([sys.executable, "-c", "from cli.entry import main; main()", "--data-dir", str(tmp_path / "data"), "demo"],
                       env=env, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    ran = check_demo(tmp_path / "data" / "demo.db", r.stdout)
    home = tmp_path / "data" / "prefect"
    assert f"PREFECT_HOME={home} " in r.stdout  # how to see them: a server on the demo's Prefect home
    with sqlite3.connect(home / "prefect.db") as db:
        runs = db.execute("SELECT r.state_type, count(*) FROM flow_run r JOIN flow f ON f.id = r.flow_id "
                          "WHERE f.name = 'review' GROUP BY r.state_type").fetchall()
        tasks = db.execute("SELECT count(*) FROM task_run").fetchone()[0]
    assert runs == [("COMPLETED", ran)]
    assert tasks >= ran  # each run's select-due task at least, sent before the server stopped
    print(r.stdout.strip().splitlines()[-1])  # "Done in N s."
