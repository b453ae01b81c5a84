"""The SMTP side: a bounded pool of reused aiosmtplib connections and the meaning of each failure.

Every mail has one envelope recipient, so a refusal concerns exactly one delivery. Failures are
classified once, here, in two kinds:

- the server's own answer about a mail: 5xx for a recipient or its message is permanent (the delivery
  is dead), 4xx is transient (tried again later); both use up one of the delivery's attempts;
- the server could not be reached or would not hold a session: connection refused, a name that does not
  resolve, timeouts, dropped connections, a 421 "closing", a greeting, login or sender refused. None of
  these says anything about the mail, so they use up no attempt: the mail waits for the server.

When the server cannot be reached, the pool stops and reports the rest of the batch as not tried.
Each outcome of a mail that was tried goes to an ``OutcomeLog``; a connection sends its next envelope and renders
the mail while the server answers it, but sends its DATA only once the outcomes before it are written. So at
most one accepted mail per connection is ever unrecorded, and outcomes of several connections share a write.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiosmtplib

from config.settings import Settings
from models.errors import InvalidInputError
from notifications.mail import ADDRESS, Sender

log = logging.getLogger(__name__)

T = TypeVar("T")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (a dependency of forumflow on CPython outside Windows), else None:
    asyncio's own.

    Sending mail is mostly the event loop's work: a write, a reply awaited and a timeout timer for each of MAIL,
    RCPT and DATA. On uvloop a mail costs forumflow about a quarter less CPU (bench/dispatch.py), and the answers
    come back sooner, so the SMTP server is kept busier too.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - installed wherever forumflow's dependencies are
        return None
    return uvloop.new_event_loop


def run_sending(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to the end on a new event loop of ``event_loop_factory``, as ``asyncio.run`` would."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(coro)


@dataclass(frozen=True)
class Outcome:
    """What happened to one mail."""

    ok: bool
    permanent: bool = False
    error: str = ""
    # The server answered about this mail (accepted or refused it): the try uses up an attempt.
    counts: bool = False
    # False when the mail never left: the server could not be reached before its turn.
    tried: bool = True


SENT = Outcome(ok=True, counts=True)
class OutcomeLog(Protocol):
    """Where the pool hands each outcome: ``add`` queues it, ``flush`` writes everything queued."""

    def add(self, key: int, outcome: Outcome) -> int:
        """Queue an outcome; its ticket: the outcome is written once ``written`` reaches it."""
        ...

    @property
    def written(self) -> int:
        """The ticket of the last outcome written (tickets grow with each ``add``)."""
        ...

    def flush(self) -> None:
        """Write every queued outcome now; raises if a write failed, this time or before."""
        ...


@dataclass(frozen=True)
class Outgoing:
    """One mail to send: its key, its envelope recipient and how to produce its bytes when its turn comes."""

    key: int
    to: str
    build: Callable[[], bytes]


def classify(exc: BaseException) -> Outcome:
    """Permanent or transient, counted as an attempt or not (see the module docstring), with a one-line reason."""
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return _answer(exc.code, f"recipient refused: {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusal = exc.recipients[0] if exc.recipients else None
        code = refusal.code if refusal is not None else 0
        text = refusal.message if refusal is not None else str(exc)
        return _answer(code, f"recipient refused: {code} {text}")
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        # Not this recipient's fault: the configuration is wrong for every mail. Keep them all.
        return Outcome(ok=False, error=_line(f"sender refused: {exc.code} {exc.message}"))
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError | aiosmtplib.SMTPHeloError | aiosmtplib.SMTPAuthenticationError):
        return Outcome(ok=False, error=_line(f"session refused: {exc.code} {exc.message}"))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _answer(exc.code, f"refused: {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return Outcome(ok=False, error=_line(f"timeout: {exc or type(exc).__name__}"))
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return Outcome(ok=False, error=_line(f"connection: {exc or type(exc).__name__}"))
    return Outcome(ok=False, error=_line(f"{type(exc).__name__}: {exc}"))


def _answer(code: int, text: str) -> Outcome:
    """The server's reply about one mail; 421 means the service is closing, which says nothing about the mail."""
    if code == 421:
        return Outcome(ok=False, error=_line(text))
    return Outcome(ok=False, permanent=500 <= code < 600, error=_line(text), counts=True)


def reaches_nobody(outcome: Outcome) -> bool:
    """True when ``outcome`` says the server is unusable for every mail, not just this one."""
    return not outcome.ok and not outcome.counts


def _line(text: str) -> str:
    return " ".join(text.split())[:480]


@dataclass(frozen=True)
class SmtpConfig:
    """How to reach the server, from settings."""

    host: str
    port: int
    tls: str
    username: str | None
    password: str | None
    timeout: float
    connections: int
    sender: Sender
    ca_file: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        """Read and check the SMTP settings (the From address and the CA file are checked)."""
        if not settings.smtp_host.strip():
            raise InvalidInputError("FORUMFLOW_SMTP_HOST: must not be empty (the mail server's name or address)")
        ca_file = settings.smtp_ca_file
        if ca_file is not None and not ca_file.is_file():
            raise InvalidInputError(f"FORUMFLOW_SMTP_CA_FILE: no such file {str(ca_file)!r}")
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            timeout=settings.smtp_timeout,
            connections=max(1, settings.smtp_connections),
            sender=Sender.parse(settings.mail_from),
            ca_file=str(ca_file) if ca_file is not None else None,
        )

    def client(self) -> aiosmtplib.SMTP:
        """A new, unconnected client; with TLS it verifies the server's certificate and name (system CAs + ca_file)."""
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            timeout=self.timeout,
            use_tls=self.tls == "tls",
            start_tls=self.tls == "starttls",
            validate_certs=True,
            cert_bundle=self.ca_file,
            local_hostname=self.sender.domain,
        )


class SmtpPool:
    """Up to ``connections`` SMTP sessions, opened on demand and reused for every mail of a run."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._idle: list[aiosmtplib.SMTP] = []
        self.down: str = ""  # why the server could not be used, once it could not
        self._reached = False  # a connection has worked in this run
        self._probe = asyncio.Lock()
        self._mail_from = _path("FROM", config.sender.addr_spec)

    async def __aenter__(self) -> SmtpPool:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Say goodbye on every open connection."""
        idle, self._idle = self._idle, []
        for client in idle:
            await _quit(client)

    async def send(self, batch: Sequence[Outgoing], outcomes: OutcomeLog | None = None) -> dict[int, Outcome]:
        """Send a batch over at most ``connections`` sessions; an outcome for every key.

        ``outcomes`` gets the outcome of every mail that was tried (not of those skipped because the server is
        down), written before that connection's next DATA and at the latest when the batch ends.
        """
        results: dict[int, Outcome] = {}
        queue = list(reversed(batch))
        workers = min(self.config.connections, len(batch))
        try:
            async with asyncio.TaskGroup() as group:  # one failing worker (the database) stops the others
                for _ in range(workers):
                    group.create_task(self._worker(queue, results, outcomes))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the callers know the error itself, not the group
        return results

    async def _worker(self, queue: list[Outgoing], results: dict[int, Outcome], outcomes: OutcomeLog | None) -> None:
        client: aiosmtplib.SMTP | None = self._idle.pop() if self._idle else None
        # The ticket of this connection's last outcome. The next mail may be rendered and its envelope sent before it
        # is written, but its DATA waits for it: at most one accepted mail per connection is ever unrecorded.
        recording = 0
        try:
            while queue:
                job = queue.pop()
                if self.down:
                    results[job.key] = Outcome(ok=False, error=self.down, tried=False)
                    continue
                if client is None:  # no session yet: a mail that cannot be built opens none
                    data = _built(job)
                    if isinstance(data, Outcome):
                        outcome = data
                    else:
                        client = await self._connect()
                        if client is None:
                            results[job.key] = Outcome(ok=False, error=self.down, tried=False)
                            continue
                        outcome, client = await self._send_one(client, job, data, outcomes, recording)
                else:
                    outcome, client = await self._send_one(client, job, None, outcomes, recording)
                results[job.key] = outcome
                if outcomes is not None:
                    recording = outcomes.add(job.key, outcome)
            if outcomes is not None:
                _written(outcomes, recording)
        finally:
            if client is not None:
                self._idle.append(client)

    async def _connect(self) -> aiosmtplib.SMTP | None:
        """A new session, or None once the server is known to be unreachable."""
        if self._reached:
            return await self._open()
        async with self._probe:  # until one connection has worked, try them one at a time: one failure says enough
            if self.down:
                return None
            client = await self._open()
            self._reached = client is not None
            return client

    async def _open(self) -> aiosmtplib.SMTP | None:
        client = self.config.client()
        try:
            await client.connect()
        except Exception as exc:
            outcome = classify(exc)
            self.down = outcome.error or "cannot connect"
            log.warning("SMTP server %s:%s unreachable: %s", self.config.host, self.config.port, self.down)
            client.close()
            return None
        return client

    async def _send_one(
        self, client: aiosmtplib.SMTP, job: Outgoing, data: bytes | None, outcomes: OutcomeLog | None,
        recording: int,
    ) -> tuple[Outcome, aiosmtplib.SMTP | None]:
        """One mail transaction on ``client``, its DATA once ``recording`` is written; the outcome and the client.

        ``data`` None: the mail is rendered while the server answers its envelope. MAIL goes out first, so the server
        has work while this process renders; rendered before it, the connection would stand idle meanwhile.
        """
        # MAIL, RCPT, DATA: what sendmail does, without parsing the same two addresses again for every mail.
        sending: Awaitable[None] = _envelope(client, self.config.sender.addr_spec, self._mail_from, job.to)
        mail: bytes | Outcome
        if data is None:
            envelope = asyncio.ensure_future(sending)
            try:
                await asyncio.sleep(0)  # the envelope's task writes MAIL, then waits for the reply
                mail = _built(job)
            except BaseException:
                envelope.cancel()
                raise
            sending = envelope
        else:
            mail = data
        try:
            await sending
        except Exception as exc:
            return await self._failed(client, job, exc)
        if isinstance(mail, Outcome):  # the mail cannot be built: its envelope is ended, the session goes on
            return mail, await _reset(client)
        if outcomes is not None:
            _written(outcomes, recording)  # outside the try: a database error is not the mail's
        try:
            await client.data(mail)
        except Exception as exc:
            return await self._failed(client, job, exc)
        return SENT, client

    async def _failed(
        self, client: aiosmtplib.SMTP, job: Outgoing, exc: Exception
    ) -> tuple[Outcome, aiosmtplib.SMTP | None]:
        """The outcome of a failed transaction, and the client if the session can go on."""
        outcome = classify(exc)
        kind = "permanent" if outcome.permanent else "transient" if outcome.counts else "not counted"
        log.info("mail %s to %s not sent (%s): %s", job.key, job.to, kind, outcome.error)
        if isinstance(exc, aiosmtplib.SMTPSenderRefused):
            self.down = outcome.error  # every other mail would be refused the same way
        if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code != 421 and client.is_connected:
            return outcome, await _reset(client)  # the session goes on with the next mail
        await _quit(client)
        return outcome, None


def _built(job: Outgoing) -> bytes | Outcome:
    """The mail's bytes; or, for a mail that cannot be built, its outcome: a rendering bug must not stop the batch,
    and the mail waits for a fix (the attempt counts)."""
    try:
        return job.build()
    except Exception as exc:
        log.exception("cannot build mail %s", job.key)
        return Outcome(ok=False, error=_line(f"cannot build the mail: {exc}"), counts=True)


async def _reset(client: aiosmtplib.SMTP) -> aiosmtplib.SMTP | None:
    """End the envelope open on ``client`` (RSET): the client, or None (the session closed) if that fails."""
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        await _quit(client)
        return None
    return client


@functools.lru_cache(maxsize=4096)  # the same recipients come back run after run
def _path(keyword: str, address: str) -> bytes | None:
    """``FROM:<address>`` or ``TO:<address>`` for an address that needs no quoting (checked); None for any other."""
    return f"{keyword}:<{address}>".encode("ascii") if ADDRESS.fullmatch(address) else None


async def _envelope(client: aiosmtplib.SMTP, sender: str, mail_from: bytes | None, to: str) -> None:
    """MAIL and RCPT for one mail, each awaiting its reply, as ``client.mail`` and ``client.rcpt`` would send them.

    Those parse both addresses anew for every mail (``email.utils.parseaddr``); addresses checked once here go
    out as they are. Any other address, or a session not greeted yet, goes through aiosmtplib's own methods.
    """
    rcpt_to = _path("TO", to)
    if mail_from is None or rcpt_to is None or client.is_ehlo_or_helo_needed:
        await client.mail(sender)
        await client.rcpt(to)
        return
    reply = await client.execute_command(b"MAIL", mail_from)
    if reply.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
    reply = await client.execute_command(b"RCPT", rcpt_to)
    if reply.code not in (aiosmtplib.SMTPStatus.completed, aiosmtplib.SMTPStatus.will_forward):
        raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, to)


def _written(outcomes: OutcomeLog, ticket: int) -> None:
    """Make sure the outcome of ``ticket`` and those before it are written (flushing the log if need be); a write
    error propagates."""
    if outcomes.written < ticket:
        outcomes.flush()


async def _quit(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit()
    except Exception:  # the server may be gone already; nothing is owed to it
        client.close()
