"""The review and dispatch flows refuse a time before the newest event, or outside the calendar, before any task runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.context import flow_context
from flows.dispatch import dispatch
from flows.review import review
from models import InvalidInputError
from tests.factories import T0, load, make_proposal

DAY = dt.timedelta(days=1)


def _task_runs(flow_run_id: Any) -> list[Any]:
    async def read() -> list[Any]:
        async with get_client() as client:
            return list(await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))))

    return asyncio.run(read())


@pytest.mark.parametrize("flow", [review, dispatch], ids=["review", "dispatch"])
@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (T0 - DAY, "is earlier than the newest recorded event"),
        (dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC), "is outside the years 1970 to 2999"),
    ],
    ids=["backwards", "year-9999"],
)
def test_flows_refuse_a_bad_time_before_any_task(forum_url: str, flow: Any, now: dt.datetime, reason: str) -> None:
    ctx = flow_context(forum_url)
    pid = make_proposal(ctx.engine, ctx.lifecycle, state="endorsed", now=T0 + 30 * DAY)
    before = load(ctx.engine, pid)
    began = time.monotonic()
    state = flow(now=now, db_url=forum_url, return_state=True)
    assert state.is_failed()
    with pytest.raises(InvalidInputError, match=reason):
        state.result()
    assert time.monotonic() - began < 10  # no task started, so no retries waited for
    assert _task_runs(state.state_details.flow_run_id) == []
    assert load(ctx.engine, pid) == before
