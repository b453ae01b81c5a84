"""The review flow through Prefect: batches as tasks, retries, idempotent re-runs, runs in the history."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from sqlalchemy.exc import OperationalError
from sqlmodel import func, select

import flows.review
from flows.context import flow_context
from flows.review import review
from models import session_scope
from models.tables import Event, Proposal
from tests.factories import T0, make_proposal

DAY = dt.timedelta(days=1)


def _task_runs(flow_run_id: Any) -> list[Any]:
    async def read() -> list[Any]:
        async with get_client() as client:
            return list(await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))))

    return asyncio.run(read())


def test_review_flow_reviews_in_batches_and_reruns_change_nothing(forum_url: str) -> None:
    ctx = flow_context(forum_url)
    in_review = [make_proposal(ctx.engine, ctx.lifecycle, state="in_review") for _ in range(5)]
    reviewed = make_proposal(ctx.engine, ctx.lifecycle, state="reviewed", now=T0 + 5 * DAY)
    make_proposal(ctx.engine, ctx.lifecycle, state="drafted")

    state = review(now=T0 + 23 * DAY, batch_size=2, db_url=forum_url, return_state=True)
    counts = state.result()
    assert counts["reminders"] == 6 and counts["proposals"] == 6 and counts["escalations"] == 0
    # 6 due proposals, batches of 2: three batch tasks. Task runs reach the server asynchronously: wait a little.
    expected = ["review-batch"] * 3 + ["select-due"]
    deadline = time.monotonic() + 20
    while True:
        names = sorted(tr.name.rsplit("-", 1)[0] for tr in _task_runs(state.state_details.flow_run_id))
        if names == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert names == expected

    again = review(now=T0 + 23 * DAY, batch_size=2, db_url=forum_url)
    assert again["proposals"] == 0 and again["reminders"] == 0
    # At the in-review deadline: the round (deadline T0 + 26 days) is closed, the five others escalate.
    closed = review(now=T0 + 30 * DAY, db_url=forum_url)
    assert (closed["closed"], closed["escalations"], closed["skipped"]) == (1, 5, 5 + 1)
    with session_scope(ctx.engine) as s:
        p = s.get(Proposal, reviewed)
        assert p is not None and p.state == "endorsed"
        reminders = s.exec(select(func.count()).select_from(Event).where(Event.action == "remind")).one()
        assert reminders == 6
        assert all(s.get(Proposal, pid).state == "in_review" for pid in in_review)  # type: ignore[union-attr]


def test_a_failing_batch_is_retried(forum_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = flow_context(forum_url)
    make_proposal(ctx.engine, ctx.lifecycle, state="in_review")
    real = flows.review.review_ids
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE proposal", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(flows.review, "review_ids", flaky)
    assert review(now=T0 + 23 * DAY, db_url=forum_url)["reminders"] == 1
    assert len(calls) == 2


def test_review_command_runs_the_flow_once(forum_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    ctx = flow_context(forum_url)
    make_proposal(ctx.engine, ctx.lifecycle, state="in_review")
    monkeypatch.setenv("FORUMFLOW_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    result = runner.invoke(app, ["--db", forum_url, "review", "--now", (T0 + 23 * DAY).isoformat(), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reminders"] == 1
    again = runner.invoke(app, ["--db", forum_url, "review", "--now", (T0 + 23 * DAY).isoformat(), "--json"])
    assert json.loads(again.stdout)["reminders"] == 0
    bad = runner.invoke(app, ["--db", forum_url, "review", "--now", "next tuesday"])
    assert bad.exit_code == 2 and "invalid time" in bad.stderr
