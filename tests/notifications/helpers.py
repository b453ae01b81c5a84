"""Test helpers: a controllable loopback SMTP server and shortcuts into the outbox."""

from __future__ import annotations

import datetime as dt
import email
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from icalendar import Calendar
from icalendar import Event as CalendarEvent
from sqlalchemy.engine import Engine
from sqlmodel import select

from models import Lifecycle, session_scope
from models.outbox import Delivery
from models.roster import bump
from models.tables import Member
from notifications.sink import free_port


@dataclass
class Received:
    """One message as the server got it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any

    @property
    def message(self) -> EmailMessage:
        """Parsed with the standard library's parser."""
        parsed = email.message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def check_ics(data: bytes) -> CalendarEvent:
    """Parse a generated .ics with ``icalendar`` and check what RFC 5545 asks of it; returns its one VEVENT."""
    cal = Calendar.from_ical(data)
    problems = [f"calendar: {e}" for e in cal.errors]
    problems += [f"calendar lacks {name}" for name in ("VERSION", "PRODID") if name not in cal]
    if str(cal.get("VERSION")) != "2.0":
        problems.append(f"VERSION is {cal.get('VERSION')!r}, not 2.0")
    events = cal.walk("VEVENT")
    if len(events) != 1:
        problems.append(f"{len(events)} VEVENTs, expected one")
    for entry in events:
        problems += [f"VEVENT: {e}" for e in entry.errors]
        problems += [f"VEVENT lacks {name}" for name in ("UID", "DTSTAMP", "DTSTART", "SUMMARY") if name not in entry]
        if "DTEND" in entry and "DURATION" in entry:
            problems.append("VEVENT has both DTEND and DURATION")
        start = entry.decoded("DTSTART") if "DTSTART" in entry else None
        if start is not None and "DTEND" in entry and not entry.decoded("DTEND") > start:
            problems.append(f"DTEND {entry.decoded('DTEND')} is not after DTSTART {start}")
        if "DURATION" in entry and not entry.decoded("DURATION") > dt.timedelta(0):
            problems.append(f"DURATION {entry.decoded('DURATION')} is not positive")
        for alarm in entry.walk("VALARM"):
            problems += [f"VALARM lacks {name}" for name in ("ACTION", "TRIGGER") if name not in alarm]
            if str(alarm.get("ACTION")) == "DISPLAY" and "DESCRIPTION" not in alarm:
                problems.append("DISPLAY VALARM lacks DESCRIPTION")
    assert not problems, "; ".join(problems)
    return events[0]


def calendars_in(data: bytes) -> list[bytes]:
    """The raw text/calendar parts of a mail."""
    parsed = email.message_from_bytes(data, policy=policy.default)
    return [part.get_payload(decode=True) for part in parsed.walk() if part.get_content_type() == "text/calendar"]


@dataclass
class ControlledHandler:
    """Accepts everything, except: 451 once for ``fail_once``, 451 always for ``defer``, 550 always for ``refuse``.

    Every calendar file that arrives is checked (``check_ics``); what is wrong lands in ``bad_calendars``,
    which the ``smtp_server`` fixture asserts empty.
    """

    received: list[Received] = field(default_factory=list)
    fail_once: set[str] = field(default_factory=set)
    defer: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)
    rcpt_answers: list[tuple[str, int]] = field(default_factory=list)
    calendars: int = 0
    bad_calendars: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        if address in self.refuse:
            self.rcpt_answers.append((address, 550))
            return "550 5.1.1 No such user here"
        if address in self.defer:
            self.rcpt_answers.append((address, 451))
            return "451 4.7.1 Greylisted, try again later"
        if address in self.fail_once:
            self.fail_once.discard(address)
            self.rcpt_answers.append((address, 451))
            return "451 4.3.0 Mailbox busy, try again later"
        self.rcpt_answers.append((address, 250))
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        for ics in calendars_in(content):
            self.calendars += 1
            try:
                check_ics(ics)
            except Exception as exc:
                self.bad_calendars.append(f"{type(exc).__name__}: {exc}")
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), content, session.peer))
        return "250 2.0.0 Accepted"


class SmtpServer:
    """A loopback SMTP server that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.handler = ControlledHandler()
        self._controller: Controller | None = None

    def start(self) -> None:
        """Listen (again) on the same port."""
        self._controller = Controller(self.handler, hostname=self.host, port=self.port, server_hostname="test-smtp")
        self._controller.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until ``start``."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def received(self) -> list[Received]:
        """Every message accepted so far."""
        return self.handler.received

    def to(self, address: str) -> list[Received]:
        """Messages accepted for ``address``."""
        return [r for r in self.received if address in r.rcpt_tos]


def set_preference(engine: Engine, handle: str, notify: str) -> None:
    """Change one member's mail preference."""
    with session_scope(engine) as s:
        member = s.get(Member, handle)
        assert member is not None
        member.notify = notify
        s.add(member)
        bump(s)  # cached rosters see the change


def deliveries(engine: Engine) -> list[Delivery]:
    """Every delivery row, by id."""
    with session_scope(engine) as s:
        return list(s.exec(select(Delivery).order_by(Delivery.id)))  # type: ignore[arg-type]


def email_of(engine: Engine, handle: str) -> str:
    """A member's address."""
    with session_scope(engine) as s:
        member = s.get(Member, handle)
        assert member is not None
        return member.email


def notice(engine: Engine, lifecycle: Lifecycle, pid: int, action: str, *, now: dt.datetime, **payload: Any) -> None:
    """Record a scheduler notice the way the review does."""
    from models.tables import Proposal

    with session_scope(engine) as s:
        proposal = s.get(Proposal, pid)
        assert proposal is not None
        lifecycle.notice(s, proposal, action, now=now, payload=payload)
