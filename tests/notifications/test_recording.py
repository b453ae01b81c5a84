"""Outcomes are recorded as the server answers: a database that fails mid-run loses no mail and repeats few."""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from config.settings import Settings
from models import Lifecycle, session_scope
from models.db import DriverStatement
from models.outbox import DeliveryStatus
from notifications import RetryPolicy, plan_deliveries, send_pending
from tests.factories import T0, make_proposal
from tests.notifications.helpers import SmtpServer, deliveries


def test_a_database_failing_while_outcomes_are_written_stops_the_run_and_repeats_at_most_one_mail_per_connection(
    forum: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_proposal(forum, lifecycle, state="reviewed")
    with session_scope(forum) as s:
        total = plan_deliveries(s, lifecycle, now=T0)
    real = DriverStatement.executemany
    calls = {"n": 0}

    def failing(self: DriverStatement, conn: Any, rows: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 3:  # the database refuses the third write: the driver's own error
            self = copy.copy(self)  # not the statement every later write shares
            self.sql = "UPDATE no_such_table SET x = 1"
        return real(self, conn, rows)

    monkeypatch.setattr(DriverStatement, "executemany", failing)
    with pytest.raises(Exception, match="no_such_table"):
        send_pending(forum, settings, lifecycle, now=T0)
    monkeypatch.undo()
    during = deliveries(forum)
    arrived = len(smtp_server.received)
    recorded = [r for r in during if r.status == DeliveryStatus.SENT]
    # Outcomes written before the failure stay; the rest wait for the lease to end, no attempt used up.
    assert recorded and all(r.attempts == 1 for r in recorded)
    assert {(r.status, r.attempts) for r in during if r not in recorded} == {(DeliveryStatus.PENDING, 0)}
    assert arrived - len(recorded) <= settings.smtp_connections  # accepted but not recorded: in flight

    early = send_pending(forum, settings, lifecycle, now=T0 + dt.timedelta(minutes=1))
    late = send_pending(forum, settings, lifecycle, now=T0 + RetryPolicy().lease)  # the pool's connections work again

    assert early.attempted == 0 and late.sent == total - len(recorded)
    assert {r.status for r in deliveries(forum)} == {DeliveryStatus.SENT}
    ids = Counter(r.message["Message-ID"] for r in smtp_server.received)
    assert sum(n - 1 for n in ids.values()) <= settings.smtp_connections
    assert set(ids) == {r.message_id for r in deliveries(forum)}


def test_each_outcome_is_one_row_update_and_a_run_takes_few_statements(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    for n in range(3):
        make_proposal(db, lifecycle, state="reviewed", title=f"Measure {n}")
    with session_scope(db) as s:
        total = plan_deliveries(s, lifecycle, now=T0)
    statements: list[str] = []

    def trace(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    db.dispose()  # new connections, traced from the start
    event.listen(db, "connect", trace)
    report = send_pending(db, settings, lifecycle, now=T0)

    updates = [s for s in statements if s.startswith("UPDATE delivery SET status")]
    transactions = [s for s in statements if s.split()[0] in ("BEGIN", "COMMIT")]
    others = len(statements) - len(updates) - len(transactions)
    assert report.sent == total == len(updates)  # one UPDATE of one row per mail, by its id
    assert all(re.search(r"WHERE delivery\.id = \d+$", s) for s in updates)
    assert len(transactions) <= 2 * (total + 3)  # a transaction per group of outcomes, at most one per mail
    assert others <= 12  # the claim, the run's reads: as many for 60 mails as for one
