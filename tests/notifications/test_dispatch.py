"""Sending through a real SMTP server: exactly once, retries, permanent refusals, a server that is down."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine

from config.settings import Settings
from models import Lifecycle, session_scope
from models.outbox import Delivery, DeliveryStatus
from models.roster import bump
from models.tables import Member, Proposal
from notifications import RetryPolicy, dispatch_once, plan_deliveries, send_pending
from notifications.sink import free_port
from tests.factories import AUTHOR, CHAIR, T0, make_proposal
from tests.notifications.helpers import SmtpServer, check_ics, deliveries, email_of, notice

# submit reaches the chair and the two other group members; recommend the author and the 16 heads.
EXPECTED = 3 + 1 + 16


def _planned(db: Engine, lifecycle: Lifecycle) -> int:
    with session_scope(db) as s:
        return plan_deliveries(s, lifecycle, now=T0)


def test_each_delivery_arrives_exactly_once(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    make_proposal(db, lifecycle, state="reviewed")

    first = dispatch_once(db, settings, lifecycle, now=T0)
    again = dispatch_once(db, settings, lifecycle, now=T0 + dt.timedelta(hours=1))

    assert first.planned == EXPECTED and first.send.sent == EXPECTED
    assert again.planned == 0 and again.send.attempted == 0
    rows = deliveries(db)
    assert len(rows) == EXPECTED and {r.status for r in rows} == {DeliveryStatus.SENT}
    received = smtp_server.received
    assert len(received) == EXPECTED
    ids = Counter(r.message["Message-ID"] for r in received)
    assert set(ids.values()) == {1}
    assert set(ids) == {r.message_id for r in rows}
    per_address = Counter(rcpt for r in received for rcpt in r.rcpt_tos)
    assert per_address[email_of(db, CHAIR)] == 1  # submit only: the chair recommended, so not told of it
    assert per_address[email_of(db, AUTHOR)] == 1  # recommend only: the author submitted
    assert per_address[email_of(db, "petrov")] == 1
    assert all(r.mail_from == "forumflow@example.org" for r in received)


def test_connections_are_reused_and_bounded(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    make_proposal(db, lifecycle, state="reviewed")

    dispatch_once(db, settings, lifecycle, now=T0)

    peers = {r.peer for r in smtp_server.received}
    assert len(smtp_server.received) == EXPECTED
    assert 1 <= len(peers) <= settings.smtp_connections


def test_451_then_250_delivers_once(db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer) -> None:
    make_proposal(db, lifecycle, state="reviewed")
    petrov = email_of(db, "petrov")
    smtp_server.handler.fail_once.add(petrov)
    policy = RetryPolicy(base=dt.timedelta(minutes=5))

    _planned(db, lifecycle)
    first = send_pending(db, settings, lifecycle, now=T0, policy=policy)
    row = next(r for r in deliveries(db) if r.email == petrov)
    early = send_pending(db, settings, lifecycle, now=T0 + dt.timedelta(minutes=4), policy=policy)
    later = send_pending(db, settings, lifecycle, now=T0 + dt.timedelta(minutes=5), policy=policy)

    assert (first.sent, first.retrying) == (EXPECTED - 1, 1)
    assert row.status == DeliveryStatus.PENDING and row.attempts == 1 and "451" in row.last_error
    assert row.next_attempt_at == T0 + dt.timedelta(minutes=5)
    assert early.attempted == 0
    assert (later.attempted, later.sent) == (1, 1)
    done = next(r for r in deliveries(db) if r.email == petrov)
    assert done.status == DeliveryStatus.SENT and done.attempts == 2 and done.last_error == ""
    assert [a for a in smtp_server.handler.rcpt_answers if a[0] == petrov] == [(petrov, 451), (petrov, 250)]
    got = smtp_server.to(petrov)
    assert len(got) == 1
    assert got[0].message["Message-ID"] == row.message_id == done.message_id  # stable across the retry


def test_550_marks_only_that_delivery_dead(db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer) -> None:
    make_proposal(db, lifecycle, state="reviewed")
    li = email_of(db, "li.ming")
    smtp_server.handler.refuse.add(li)

    report = dispatch_once(db, settings, lifecycle, now=T0).send
    retry = send_pending(db, settings, lifecycle, now=T0 + dt.timedelta(days=2))

    assert (report.sent, report.dead, report.retrying) == (EXPECTED - 1, 1, 0)
    rows = deliveries(db)
    dead = [r for r in rows if r.status == DeliveryStatus.DEAD]
    assert [r.email for r in dead] == [li]
    assert "550" in dead[0].last_error
    assert all(r.status == DeliveryStatus.SENT for r in rows if r.email != li)
    assert retry.attempted == 0  # dead is final
    assert smtp_server.to(li) == [] and len(smtp_server.received) == EXPECTED - 1


def test_a_mail_that_cannot_be_built_waits_for_a_fix_and_the_session_goes_on(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifications.render import Renderer

    make_proposal(db, lifecycle, state="reviewed")
    li = email_of(db, "li.ming")
    event_layout = Renderer.event_layout

    def broken_for_li(self: Renderer, view: Any, member: Any) -> Any:
        if member.handle == "li.ming":
            raise ValueError("a template bug")
        return event_layout(self, view, member)

    monkeypatch.setattr(Renderer, "event_layout", broken_for_li)
    one = settings.model_copy(update={"smtp_connections": 1})

    report = dispatch_once(db, one, lifecycle, now=T0).send

    assert (report.sent, report.retrying, report.dead) == (EXPECTED - 1, 1, 0)
    (waiting,) = [r for r in deliveries(db) if r.email == li]
    assert waiting.status == DeliveryStatus.PENDING and waiting.attempts == 1
    assert "cannot build the mail: a template bug" in waiting.last_error
    assert smtp_server.to(li) == [] and len(smtp_server.received) == EXPECTED - 1
    assert len({r.peer for r in smtp_server.received}) == 1  # its envelope was reset; the one session went on

    monkeypatch.setattr(Renderer, "event_layout", event_layout)  # the fix
    later = send_pending(db, one, lifecycle, now=T0 + dt.timedelta(hours=1))

    assert (later.attempted, later.sent) == (1, 1)
    assert len(smtp_server.to(li)) == 1 and len(smtp_server.received) == EXPECTED


def test_mails_that_cannot_be_built_open_no_session(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifications.render import Renderer

    def broken(self: Renderer, view: Any, member: Any) -> Any:
        raise ValueError("a template bug")

    make_proposal(db, lifecycle, state="reviewed")
    monkeypatch.setattr(Renderer, "event_layout", broken)
    opened: list[object] = []

    async def connect(pool: object) -> None:  # noted, and the server then counts as unreachable
        opened.append(pool)

    monkeypatch.setattr("notifications.smtp.SmtpPool._connect", connect)

    report = dispatch_once(db, settings, lifecycle, now=T0).send

    assert (report.sent, report.retrying) == (0, EXPECTED) and opened == [] and smtp_server.received == []
    assert {r.attempts for r in deliveries(db)} == {1}


def test_a_server_down_for_a_night_loses_nothing_and_sends_everything_once(
    forum: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    make_proposal(forum, lifecycle, state="reviewed")
    smtp_server.stop()
    night = [T0 + dt.timedelta(minutes=m) for m in range(0, 12 * 60, 15)]  # dispatch every 15 minutes for 12 hours

    reports = []
    for now in night:
        if now == T0 + dt.timedelta(hours=6):
            make_proposal(forum, lifecycle, state="in_review", now=now, title="Solar parks")  # mail keeps coming
        reports.append(dispatch_once(forum, settings, lifecycle, now=now).send)
    during = deliveries(forum)
    smtp_server.start()
    morning = dispatch_once(forum, settings, lifecycle, now=night[-1] + dt.timedelta(minutes=15)).send
    again = dispatch_once(forum, settings, lifecycle, now=night[-1] + dt.timedelta(hours=1)).send

    assert all(r.sent == 0 and r.errors and r.failed == 0 and r.retrying == r.unreachable for r in reports)
    assert len(during) == EXPECTED + 3
    assert {(r.status, r.attempts) for r in during} == {(DeliveryStatus.PENDING, 0)}  # no attempt used up
    assert all("connect" in r.last_error.lower() for r in during)
    assert (morning.sent, morning.retrying, morning.failed, morning.errors) == (EXPECTED + 3, 0, 0, [])
    assert again.attempted == 0
    after = deliveries(forum)
    assert {(r.status, r.attempts, r.last_error) for r in after} == {(DeliveryStatus.SENT, 1, "")}
    ids = Counter(r.message["Message-ID"] for r in smtp_server.received)
    assert len(ids) == EXPECTED + 3 and set(ids.values()) == {1}
    assert set(ids) == {r.message_id for r in after}


@pytest.mark.parametrize("outage", ["refused", "timeout", "unresolved"])
def test_no_kind_of_unreachable_server_uses_up_attempts(
    db: Engine, lifecycle: Lifecycle, settings: Settings, outage: str
) -> None:
    make_proposal(db, lifecycle, state="in_review")
    with contextlib.ExitStack() as stack:
        if outage == "refused":
            config = {"smtp_port": free_port()}
        elif outage == "timeout":  # a server that takes the connection and never greets
            mute = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
            config = {"smtp_port": mute.getsockname()[1], "smtp_timeout": 0.3}
        else:
            config = {"smtp_host": "mail.forumflow.invalid"}
        down = settings.model_copy(update=config)
        runs = [dispatch_once(db, down, lifecycle, now=T0 + dt.timedelta(minutes=m)).send for m in range(0, 30, 2)]

    assert all(r.sent == 0 and r.unreachable == r.attempted == 3 and r.errors for r in runs)
    assert {(r.status, r.attempts) for r in deliveries(db)} == {(DeliveryStatus.PENDING, 0)}
    word = {"refused": "connect", "timeout": "timeout", "unresolved": "connect"}[outage]
    assert all(word in r.last_error.lower() for r in deliveries(db))


def test_a_server_that_keeps_deferring_is_retried_with_backoff_up_to_an_hour_then_given_up(
    forum: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    make_proposal(forum, lifecycle, state="in_review")
    chair = email_of(forum, CHAIR)
    smtp_server.handler.defer.add(chair)
    policy = RetryPolicy()

    now, waits = T0, []
    first = dispatch_once(forum, settings, lifecycle, now=now).send
    for _ in range(policy.max_attempts + 2):
        row = next(r for r in deliveries(forum) if r.email == chair)
        if row.status != DeliveryStatus.PENDING:
            break
        waits.append(row.next_attempt_at - now)
        early = send_pending(forum, settings, lifecycle, now=row.next_attempt_at - dt.timedelta(seconds=1), policy=policy)
        assert early.attempted == 0
        now = row.next_attempt_at
        send_pending(forum, settings, lifecycle, now=now, policy=policy)

    assert (first.sent, first.retrying) == (2, 1)
    minutes = [int(w.total_seconds() // 60) for w in waits]
    assert minutes == [1, 2, 4, 8, 16, 32, 60, 60, 60]  # doubling, capped at one hour
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, policy.max_attempts)
    assert row.last_error.startswith(f"gave up after {policy.max_attempts} attempts: recipient refused: 451")
    assert [code for address, code in smtp_server.handler.rcpt_answers if address == chair] == [451] * policy.max_attempts
    assert smtp_server.to(chair) == []


def test_retry_delays_double_and_stop_at_one_hour() -> None:
    policy = RetryPolicy()

    assert [policy.delay(n) for n in (1, 2, 3)] == [dt.timedelta(minutes=m) for m in (1, 2, 4)]
    assert policy.delay(7) == policy.delay(50) == dt.timedelta(hours=1)


def test_limit_and_claim_leave_the_rest_for_later(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    make_proposal(db, lifecycle, state="reviewed")
    _planned(db, lifecycle)

    part = send_pending(db, settings, lifecycle, now=T0, limit=5)
    rest = send_pending(db, settings, lifecycle, now=T0)

    assert (part.sent, rest.sent) == (5, EXPECTED - 5)
    assert len(smtp_server.received) == EXPECTED


def test_a_claimed_delivery_is_not_sent_by_a_second_dispatcher(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    make_proposal(db, lifecycle, state="in_review")
    _planned(db, lifecycle)
    lease_end = T0 + RetryPolicy().lease
    # Another dispatcher took every row at T0 and is still sending: the rows are leased.
    with session_scope(db) as s:
        s.execute(update(Delivery).values(next_attempt_at=lease_end))

    during = send_pending(db, settings, lifecycle, now=T0 + dt.timedelta(minutes=1))
    after = send_pending(db, settings, lifecycle, now=lease_end)  # that dispatcher died: the lease ran out

    assert during.attempted == 0 and after.sent == 3
    assert {r.attempts for r in deliveries(db)} == {1}


def test_crlf_in_a_title_cannot_add_a_header(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    pid = make_proposal(db, lifecycle, state="drafted")
    evil = "Grain corridor\r\nBcc: victim@evil.example\r\nX-Injected: yes\n\nbody"
    with session_scope(db) as s:  # a title written around the lifecycle (which folds whitespace itself)
        s.execute(update(Proposal).where(Proposal.id == pid).values(title=evil))  # type: ignore[arg-type]
        s.execute(update(Member).where(Member.handle == CHAIR).values(name="Kuznetsov\r\nCc: other@evil.example"))  # type: ignore[arg-type]
        bump(s)
    with session_scope(db) as s:
        lifecycle.apply(s, pid, "submit", AUTHOR, now=T0)

    dispatch_once(db, settings, lifecycle, now=T0)

    assert len(smtp_server.received) == 3
    for r in smtp_server.received:
        msg = r.message
        assert msg["Bcc"] is None and msg["X-Injected"] is None and msg["Cc"] is None
        assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
        assert "Grain corridor Bcc: victim@evil.example X-Injected: yes body" in msg["Subject"]
        assert all("evil.example" not in rcpt for rcpt in r.rcpt_tos)
        header_block = r.data.split(b"\r\n\r\n", 1)[0]
        assert b"\r\nBcc:" not in header_block and b"\r\nX-Injected:" not in header_block
    chair = smtp_server.to(email_of(db, CHAIR))[0].message
    assert chair["To"].addresses[0].display_name == "Kuznetsov Cc: other@evil.example"
    assert chair["To"].addresses[0].addr_spec == email_of(db, CHAIR)


def test_russian_and_chinese_mails_arrive_correctly_encoded(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    make_proposal(db, lifecycle, state="reviewed", title="Зерновой коридор 粮食走廊 <script>x()</script>")

    dispatch_once(db, settings, lifecycle, now=T0)

    ru = smtp_server.to(email_of(db, "petrov"))[0]
    zh = smtp_server.to(email_of(db, "li.ming"))[0]
    for got in (ru, zh):
        head = got.data.split(b"\r\n\r\n", 1)[0]
        head.decode("ascii")  # every header is 7-bit on the wire (RFC 2047 words)
        assert b"=?utf-8?" in head
        assert got.message.get_content_type() == "multipart/alternative"
        for part in got.message.iter_parts():
            assert part.get_content_charset() == "utf-8"
            assert part["Content-Transfer-Encoding"] in ("base64", "quoted-printable")
    ru_msg, zh_msg = ru.message, zh.message
    assert ru_msg["Subject"] == "[sco-hrf] №1 «Зерновой коридор 粮食走廊 <script>x()</script>»: открыт раунд одобрения"
    assert str(ru_msg["To"]) == "Алексей Петров <a.petrov@example.org>"
    assert ru_msg["Content-Language"] == "ru"
    ru_text = ru_msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    ru_html = ru_msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert ru_text.startswith("Здравствуйте, Алексей Петров!")
    assert "Челябинская" not in ru_text and "Просим одобрить предложение от имени вашего региона" in ru_text
    assert "22 марта 2021 г., 14:00" in ru_text
    assert "Зерновой коридор 粮食走廊 &lt;script&gt;x()&lt;/script&gt;" in ru_html and "<script>" not in ru_html
    assert zh_msg["Subject"] == "[sco-hrf] 第1号提案《Зерновой коридор 粮食走廊 <script>x()</script>》进入认可程序"
    assert str(zh_msg["To"]) == "李明 <li.ming@example.org>"
    zh_text = zh_msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert zh_text.startswith("李明，您好！") and "2021年3月22日 17:00" in zh_text
    # The working group by its name in the reader's language, as the definition gives it (text and HTML).
    zh_html = zh_msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Промышленное производство и сельское хозяйство" in ru_text and "Промышленное производство" in ru_html
    assert "工业生产与农业" in zh_text and "工业生产与农业" in zh_html
    assert "Industrial production" not in ru_text + ru_html + zh_text + zh_html
    en_msg = smtp_server.to(email_of(db, "deshmukh"))[0].message
    assert "Industrial production and agriculture" in en_msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in zh_msg.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_a_reminder_arrives_with_its_calendar_entry(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    pid = make_proposal(db, lifecycle, state="reviewed")
    deadline = T0 + dt.timedelta(days=21)
    notice(db, lifecycle, pid, "remind", now=T0, recipients=["petrov"], offset_days=7, deadline=deadline.isoformat())

    dispatch_once(db, settings, lifecycle, now=T0)

    (reminder,) = [r.message for r in smtp_server.to(email_of(db, "petrov")) if "Напоминание" in r.message["Subject"]]
    assert reminder.get_content_type() == "multipart/mixed"
    (ics,) = list(reminder.iter_attachments())
    assert ics.get_content_type() == "text/calendar" and ics.get_param("method") == "PUBLISH"
    assert "DTSTART:20210322T090000Z" in ics.get_content() and "Напоминание" in ics.get_content()
    entry = check_ics(ics.get_payload(decode=True))
    assert entry.decoded("dtstart") == deadline and "DTEND" not in entry
    assert smtp_server.handler.calendars == 1


def test_sending_works_from_inside_a_running_event_loop(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    import asyncio

    make_proposal(db, lifecycle, state="in_review")

    async def caller() -> int:  # an async application calling the synchronous API
        return dispatch_once(db, settings, lifecycle, now=T0).send.sent

    assert asyncio.run(caller()) == 3
    assert len(smtp_server.received) == 3


@pytest.mark.parametrize("inside_a_loop", [False, True])
def test_mail_goes_out_on_uvloop(
    db: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch,
    inside_a_loop: bool,
) -> None:
    """The SMTP sessions run on uvloop's event loop (a quarter less CPU per mail), also for an async caller."""
    import asyncio

    import uvloop

    from notifications.smtp import SmtpPool

    loops: list[type] = []
    opened = SmtpPool._open

    async def noting(pool: SmtpPool) -> object:
        loops.append(type(asyncio.get_running_loop()))
        return await opened(pool)

    monkeypatch.setattr(SmtpPool, "_open", noting)
    make_proposal(db, lifecycle, state="in_review")

    async def caller() -> int:
        return dispatch_once(db, settings, lifecycle, now=T0).send.sent

    sent = asyncio.run(caller()) if inside_a_loop else dispatch_once(db, settings, lifecycle, now=T0).send.sent
    assert sent == 3 and len(smtp_server.received) == 3
    assert loops and all(loop is uvloop.Loop for loop in loops)


def test_claim_retry_and_record_on_sqlite_and_postgresql(
    forum: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    make_proposal(forum, lifecycle, state="reviewed")
    petrov = email_of(forum, "petrov")
    smtp_server.handler.fail_once.add(petrov)

    first = dispatch_once(forum, settings, lifecycle, now=T0)
    second = dispatch_once(forum, settings, lifecycle, now=T0 + dt.timedelta(minutes=1))
    third = dispatch_once(forum, settings, lifecycle, now=T0 + dt.timedelta(hours=1))

    assert (first.planned, first.send.sent, first.send.retrying) == (EXPECTED, EXPECTED - 1, 1)
    assert (second.send.attempted, second.send.sent) == (1, 1) and third.send.attempted == 0
    assert {r.status for r in deliveries(forum)} == {DeliveryStatus.SENT}
    assert Counter(r for got in smtp_server.received for r in got.rcpt_tos)[petrov] == 1
    assert len(smtp_server.received) == EXPECTED
