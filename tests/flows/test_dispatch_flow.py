"""Review and dispatch flows end to end: events become mail in a real aiosmtpd server, each exactly once."""

from __future__ import annotations

import datetime as dt
import email
import email.header
import email.policy
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from flows.context import flow_context
from flows.dispatch import dispatch
from flows.review import review
from models import session_scope
from models.outbox import Delivery
from models.tables import Event
from notifications.sink import MailSink
from tests.factories import CHAIR, T0, make_proposal

DAY = dt.timedelta(days=1)


@pytest.fixture
def sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MailSink]:
    """A real SMTP server on a free loopback port; the flows' settings point at it."""
    with MailSink(tmp_path / "maildir", port=0) as server:
        monkeypatch.setenv("FORUMFLOW_SMTP_HOST", server.host)
        monkeypatch.setenv("FORUMFLOW_SMTP_PORT", str(server.port))
        monkeypatch.setenv("FORUMFLOW_SMTP_TLS", "none")
        yield server


def mailbox_ids(sink: MailSink) -> Counter[str]:
    return Counter(str(m["Message-ID"]).strip() for m in sink.messages())


def delivered(forum_url: str, action: str) -> list[tuple[str, str, str | None]]:
    """(recipient, status, Message-ID) of the deliveries of every ``action`` event."""
    with session_scope(flow_context(forum_url).engine) as s:
        ids = [e.id for e in s.exec(select(Event).where(Event.action == action))]
        rows = s.exec(select(Delivery).where(Delivery.event_id.in_(ids))).all()  # type: ignore[union-attr]
        return sorted((d.recipient, d.status, d.message_id) for d in rows)


def test_reminder_and_escalation_mail_arrive_once(forum_url: str, sink: MailSink) -> None:
    ctx = flow_context(forum_url)
    make_proposal(ctx.engine, ctx.lifecycle, state="in_review")
    deadline = T0 + 30 * DAY

    first = dispatch(now=T0, db_url=forum_url)
    assert first["planned"] > 0 and first["sent"] == first["planned"]  # the create and submit events

    assert review(now=deadline - 7 * DAY, db_url=forum_url)["reminders"] == 1
    sent = dispatch(now=deadline - 7 * DAY, db_url=forum_url)
    assert (sent["planned"], sent["sent"]) == (1, 1)
    ((recipient, status, message_id),) = delivered(forum_url, "remind")
    assert (recipient, status) == (CHAIR, "sent")

    # Re-running both flows at the same instant sends nothing more.
    assert review(now=deadline - 7 * DAY, db_url=forum_url)["reminders"] == 0
    assert dispatch(now=deadline - 7 * DAY, db_url=forum_url)["sent"] == 0

    review(now=deadline, db_url=forum_url)
    dispatch(now=deadline, db_url=forum_url)
    ((recipient, status, _),) = delivered(forum_url, "escalate")
    assert (recipient, status) == (CHAIR, "sent")

    ids = mailbox_ids(sink)
    assert ids[message_id or ""] == 1
    assert all(n == 1 for n in ids.values()), "a message arrived twice"
    with session_scope(ctx.engine) as s:
        assert len(s.exec(select(Delivery).where(Delivery.status == "sent")).all()) == sum(ids.values())

    # The chair reads Russian: the reminder's subject is Russian, and it carries the deadline as a calendar entry.
    (reminder,) = [m for m in sink.messages() if str(m["Message-ID"]).strip() == message_id]
    parsed = email.message_from_bytes(reminder.as_bytes(), policy=email.policy.default)
    assert parsed["To"].addresses[0].addr_spec == "n.kuznetsov@example.org"
    assert any("\u0400" <= ch <= "\u04ff" for ch in str(parsed["Subject"]))
    assert any(part.get_content_type() == "text/calendar" for part in parsed.walk())


def test_hand_over_is_mailed_to_the_new_presiding_head(forum_url: str, sink: MailSink) -> None:
    ctx = flow_context(forum_url)
    make_proposal(ctx.engine, ctx.lifecycle, state="endorsed", now=dt.datetime(2022, 12, 26, 10, tzinfo=dt.UTC))
    new_year = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
    assert review(now=new_year, db_url=forum_url)["handovers"] == 1
    dispatch(now=new_year, db_url=forum_url)
    assert [(r, s) for r, s, _ in delivered(forum_url, "handover")] == [("karimov", "sent")]
    assert any(m["To"] and "s.karimov@example.org" in str(m["To"]) for m in sink.messages())


def test_dispatch_command_runs_the_flow_once(
    forum_url: str, sink: MailSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    ctx = flow_context(forum_url)
    make_proposal(ctx.engine, ctx.lifecycle, state="in_review")  # create + submit: the chair hears of it
    monkeypatch.setenv("FORUMFLOW_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    result = runner.invoke(app, ["--db", forum_url, "dispatch", "--flow", "--now", T0.isoformat(), "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert counts["planned"] >= 1 and counts["sent"] == counts["planned"]
    assert sum(mailbox_ids(sink).values()) == counts["sent"]
    again = runner.invoke(app, ["--db", forum_url, "dispatch", "--flow", "--now", T0.isoformat(), "--json"])
    assert json.loads(again.stdout)["planned"] == 0
    assert sum(mailbox_ids(sink).values()) == counts["sent"]
