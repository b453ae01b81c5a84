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
from sqlalchemy.engine import Engine
from sqlmodel import select

from models import Lifecycle, session_scope
from models.outbox import Delivery
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


@dataclass
class ControlledHandler:
    """Accepts everything, except: 451 once for addresses in ``fail_once``, 550 always for ``refuse``."""

    received: list[Received] = field(default_factory=list)
    fail_once: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)
    rcpt_answers: list[tuple[str, int]] = field(default_factory=list)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        if address in self.refuse:
            self.rcpt_answers.append((address, 550))
            return "550 5.1.1 No such user here"
        if address in self.fail_once:
            self.fail_once.discard(address)
            self.rcpt_answers.append((address, 451))
            return "451 4.3.0 Mailbox busy, try again later"
        self.rcpt_answers.append((address, 250))
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
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
