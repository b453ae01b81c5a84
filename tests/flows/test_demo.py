"""The demo runs its review flow through Prefect: every review run is a flow run in Prefect's history."""

from __future__ import annotations

import asyncio
import mailbox
import os
import shlex
from pathlib import Path

import pytest
from rich.console import Console

from cli.demo import run_demo
from config import ForumDefinition, Settings
from tests.demo_checks import check_demo


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
