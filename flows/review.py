"""The ``review`` flow: the scheduled sweep (reminders, escalations, silence procedure, hand-over, progress).

Thin: one task selects the due proposals in batches of ids, then one task per batch reviews them, each
batch in its own transaction. The decisions live in ``models.review``.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from flows.context import flow_context, is_sqlite
from models.review import DEFAULT_BATCH, ReviewReport, check_review_time, review_ids, select_due


@task(name="select-due", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def select_due_task(now: dt.datetime, batch_size: int, db_url: str | None = None) -> list[list[int]]:
    """Ids of the proposals with review work due at ``now``, in batches."""
    ctx = flow_context(db_url)
    return select_due(ctx.engine, ctx.lifecycle, now, batch_size)


@task(name="review-batch", retries=3, retry_delay_seconds=[1, 5, 20], cache_policy=NO_CACHE)
def review_batch_task(ids: list[int], now: dt.datetime, db_url: str | None = None) -> dict[str, int]:
    """Review one batch of proposals in one transaction; safe to retry (it is idempotent)."""
    ctx = flow_context(db_url)
    return review_ids(ctx.engine, ctx.lifecycle, ids, now).as_dict()


@flow(name="review", description="Reminders, escalations, silence procedure, presiding-term hand-over, progress reviews.")
def review(now: dt.datetime | None = None, batch_size: int = DEFAULT_BATCH, db_url: str | None = None) -> dict[str, int]:
    """Review every open proposal at ``now`` (default: the time the run starts); returns counts by kind."""
    logger = get_run_logger()
    # Refused before any task runs (and is retried): a time before the newest event, or outside the calendar.
    when = check_review_time(flow_context(db_url).engine, now or dt.datetime.now(dt.UTC))
    id_batches = select_due_task(when, batch_size, db_url)
    if is_sqlite(flow_context(db_url)):
        # One writer at a time on SQLite: concurrent batches would only queue on the lock.
        results = [review_batch_task(ids, when, db_url) for ids in id_batches]
    else:
        futures = review_batch_task.map(id_batches, unmapped(when), unmapped(db_url))
        results = [f.result() for f in futures]
    report = ReviewReport()
    for counts in results:
        report += ReviewReport(**counts)
    logger.info("review at %s: %d batches, %s", when.isoformat(), len(id_batches), report.as_dict())
    return report.as_dict()
