"""The local mail sink: an aiosmtpd server on loopback that keeps every message in a Maildir.

It needs nothing installed and relays nothing: what it receives stays in ``<data dir>/maildir``, where
any mail client (or ``python -m mailbox``-style scripts) can open it.
"""

from __future__ import annotations

import ipaddress
import logging
import mailbox
import signal
import socket
import threading
from collections.abc import Callable
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from models.errors import ForumflowError

log = logging.getLogger(__name__)


# Called once per stored copy with the envelope recipient and the decoded subject.
OnMessage = Callable[[str, str], None]


class SinkError(ForumflowError):
    """The sink cannot start (address not on loopback, port taken, ...)."""


class MaildirHandler:
    """Stores each message as received, with Return-Path and Delivered-To lines in front."""

    def __init__(self, maildir: Path, on_message: OnMessage | None = None) -> None:
        self.on_message = on_message
        for sub in ("tmp", "new", "cur"):  # Maildir(create=True) skips these when the folder exists
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(maildir, create=False)
        self.received = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Keep the message; one copy per envelope recipient."""
        content = envelope.original_content or b""
        for rcpt in envelope.rcpt_tos:
            trace = f"Return-Path: <{envelope.mail_from}>\r\nDelivered-To: {rcpt}\r\n".encode("ascii", "replace")
            try:
                with self._lock:
                    self.maildir.add(trace + content)
                    self.received += 1
            except OSError as exc:  # a full or missing disk is the sink's trouble, not the recipient's: retry later
                log.error("cannot store a message for %s: %s", rcpt, exc)
                return "451 4.3.0 Cannot store the message now"
            if self.on_message is not None:
                self.on_message(rcpt, _subject(content))
        log.debug("stored a message from %s for %s", envelope.mail_from, ", ".join(envelope.rcpt_tos))
        return "250 2.0.0 Message stored"


def _subject(content: bytes) -> str:
    """The message's subject, decoded (mails in Russian or Chinese encode it)."""
    try:
        return str(BytesHeaderParser(policy=default_policy).parsebytes(content).get("Subject", ""))
    except (ValueError, LookupError):  # a malformed header is the sender's problem; the message is stored anyway
        return "(unreadable subject)"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MailSink:
    """An SMTP server on loopback writing into a Maildir; ``port=0`` picks a free port."""

    def __init__(
        self, maildir: Path | str, host: str = "127.0.0.1", port: int = 8025, *, on_message: OnMessage | None = None,
    ) -> None:
        if not _loopback(host):
            raise SinkError(f"the mail sink listens on loopback only, not on {host!r}")
        self.maildir = Path(maildir)
        self.host = host
        self.port = port
        self.handler: MaildirHandler | None = None
        self.on_message = on_message
        self._controller: Controller | None = None

    def start(self) -> MailSink:
        """Start serving in a background thread."""
        if self._controller is not None:
            return self
        self.maildir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port(self.host)
        else:
            self._check_port()
        self.handler = MaildirHandler(self.maildir, self.on_message)
        controller = Controller(
            self.handler, hostname=self.host, port=self.port, server_hostname="forumflow-sink", ready_timeout=10
        )
        try:
            controller.start()
        except (OSError, RuntimeError, TimeoutError) as exc:
            raise SinkError(f"cannot start the mail sink on {self.host}:{self.port}: {exc}") from None
        self._controller = controller
        log.info("mail sink listening on %s:%s, storing into %s", self.host, self.port, self.maildir)
        return self

    def _check_port(self) -> None:
        """Fail at once on a taken port (aiosmtpd would only notice after its ready timeout)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                raise SinkError(f"cannot start the mail sink on {self.host}:{self.port}: {exc.strerror or exc}") from None

    def stop(self) -> None:
        """Stop serving; the Maildir stays."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
            log.info("mail sink on %s:%s stopped", self.host, self.port)

    @property
    def running(self) -> bool:
        """Whether the server is up."""
        return self._controller is not None

    def messages(self) -> list[mailbox.MaildirMessage]:
        """Everything stored so far."""
        return list(mailbox.Maildir(self.maildir, create=False))

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def run_sink(
    maildir: Path | str, host: str = "127.0.0.1", port: int = 8025, *, stop: threading.Event | None = None,
    on_message: OnMessage | None = None,
) -> None:
    """Serve in the foreground until ``stop`` is set, Ctrl-C or SIGTERM; ``on_message`` hears of every mail stored."""
    stop = stop or threading.Event()
    previous: Any = None
    if threading.current_thread() is threading.main_thread():

        def _terminate(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with MailSink(maildir, host, port, on_message=on_message):
            while not stop.wait(0.5):
                pass
    except KeyboardInterrupt:
        log.info("mail sink interrupted")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
