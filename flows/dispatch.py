"""The ``dispatch`` flow: plan deliveries for new events, then send the pending ones over SMTP.

Thin: the outbox (``notifications``) is idempotent, so both tasks may be retried; transient SMTP failures
are retried by the outbox itself with backoff, task retries cover the database and the process.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

import notifications
from flows.context import flow_context
from models.clock import check_run_time
from models.db import session_scope


@task(name="plan-deliveries", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def plan_task(now: dt.datetime, db_url: str | None = None) -> int:
    """Create the deliveries of events that have none yet; returns how many."""
    ctx = flow_context(db_url)
    with session_scope(ctx.engine) as session:
        return notifications.plan_deliveries(session, ctx.lifecycle, now=now)


@task(name="send-pending", retries=3, retry_delay_seconds=[5, 30, 120], cache_policy=NO_CACHE)
def send_task(now: dt.datetime, limit: int | None = None, db_url: str | None = None) -> dict[str, int]:
    """Send the deliveries due at ``now``; returns counts by outcome."""
    ctx = flow_context(db_url)
    report = notifications.send_pending(ctx.engine, ctx.settings, ctx.lifecycle, now=now, limit=limit)
    return {
        "attempted": report.attempted, "sent": report.sent, "retrying": report.retrying,
        "failed": report.failed, "dead": report.dead, "digests": report.digests,
    }


@flow(name="dispatch", description="Plan deliveries for new events and send the pending ones over SMTP.")
def dispatch(now: dt.datetime | None = None, limit: int | None = None, db_url: str | None = None) -> dict[str, int]:
    """Plan and send once at ``now`` (default: the time the run starts); returns counts."""
    logger = get_run_logger()
    # Refused before any task runs (and is retried): a time before the newest event, or outside the calendar.
    when = check_run_time(flow_context(db_url).engine, now or dt.datetime.now(dt.UTC), run="dispatch")
    planned = plan_task(when, db_url)
    sent = send_task(when, limit, db_url)
    logger.info("dispatch at %s: %d planned, %s", when.isoformat(), planned, sent)
    return {"planned": planned, **sent}
