"""The SMTP side: a bounded pool of reused aiosmtplib connections and the meaning of each failure.

Every mail has one envelope recipient, so a refusal concerns exactly one delivery. Failures are
classified once, here: 5xx for a recipient or its message is permanent (the delivery is dead); 4xx,
refused or dropped connections and timeouts are transient (tried again later). When the server cannot
be reached at all, the pool stops and reports the rest of the batch as transient without trying them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosmtplib

from config.settings import Settings
from notifications.mail import Sender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened to one mail."""

    ok: bool
    permanent: bool = False
    error: str = ""


SENT = Outcome(ok=True)


@dataclass(frozen=True)
class Outgoing:
    """One mail to send: its key, its envelope recipient and how to produce its bytes when its turn comes."""

    key: int
    to: str
    build: Callable[[], bytes]


def classify(exc: BaseException) -> Outcome:
    """Permanent or transient, with a one-line reason."""
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return Outcome(ok=False, permanent=500 <= exc.code < 600, error=_line(f"recipient refused: {exc.code} {exc.message}"))
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusal = exc.recipients[0] if exc.recipients else None
        code = refusal.code if refusal is not None else 0
        text = refusal.message if refusal is not None else str(exc)
        return Outcome(ok=False, permanent=500 <= code < 600, error=_line(f"recipient refused: {code} {text}"))
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        # Not this recipient's fault: the configuration is wrong for every mail. Keep them all.
        return Outcome(ok=False, error=_line(f"sender refused: {exc.code} {exc.message}"))
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError | aiosmtplib.SMTPHeloError | aiosmtplib.SMTPAuthenticationError):
        return Outcome(ok=False, error=_line(f"session refused: {exc.code} {exc.message}"))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return Outcome(ok=False, permanent=500 <= exc.code < 600, error=_line(f"refused: {exc.code} {exc.message}"))
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return Outcome(ok=False, error=_line(f"timeout: {exc}"))
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return Outcome(ok=False, error=_line(f"connection: {exc}"))
    return Outcome(ok=False, error=_line(f"{type(exc).__name__}: {exc}"))


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

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        """Read and check the SMTP settings (the From address is validated)."""
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            timeout=settings.smtp_timeout,
            connections=max(1, settings.smtp_connections),
            sender=Sender.parse(settings.mail_from),
        )

    def client(self) -> aiosmtplib.SMTP:
        """A new, unconnected client."""
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            timeout=self.timeout,
            use_tls=self.tls == "tls",
            start_tls=self.tls == "starttls",
            local_hostname=self.sender.domain,
        )


class SmtpPool:
    """Up to ``connections`` SMTP sessions, opened on demand and reused for every mail of a run."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._idle: list[aiosmtplib.SMTP] = []
        self.down: str = ""  # why the server could not be reached, once it could not

    async def __aenter__(self) -> SmtpPool:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Say goodbye on every open connection."""
        idle, self._idle = self._idle, []
        for client in idle:
            await _quit(client)

    async def send(self, batch: Sequence[Outgoing]) -> dict[int, Outcome]:
        """Send a batch over at most ``connections`` sessions; an outcome for every key."""
        results: dict[int, Outcome] = {}
        queue = list(reversed(batch))
        workers = min(self.config.connections, len(batch))
        await asyncio.gather(*(self._worker(queue, results) for _ in range(workers)))
        return results

    async def _worker(self, queue: list[Outgoing], results: dict[int, Outcome]) -> None:
        client: aiosmtplib.SMTP | None = self._idle.pop() if self._idle else None
        try:
            while queue:
                job = queue.pop()
                if self.down:
                    results[job.key] = Outcome(ok=False, error=self.down)
                    continue
                try:
                    data = job.build()
                except Exception as exc:  # a rendering bug must not stop the batch; the mail waits for a fix
                    log.exception("cannot build mail %s", job.key)
                    results[job.key] = Outcome(ok=False, error=_line(f"cannot build the mail: {exc}"))
                    continue
                if client is None:
                    client = await self._connect()
                    if client is None:
                        results[job.key] = Outcome(ok=False, error=self.down)
                        continue
                results[job.key], client = await self._send_one(client, job, data)
        finally:
            if client is not None:
                self._idle.append(client)

    async def _connect(self) -> aiosmtplib.SMTP | None:
        client = self.config.client()
        try:
            await client.connect()
        except Exception as exc:
            outcome = classify(exc)
            self.down = outcome.error or "cannot connect"
            log.warning("SMTP server %s:%s unreachable: %s", self.config.host, self.config.port, self.down)
            return None
        return client

    async def _send_one(self, client: aiosmtplib.SMTP, job: Outgoing, data: bytes) -> tuple[Outcome, aiosmtplib.SMTP | None]:
        """One mail transaction on ``client``; returns the outcome and the client if it is still usable."""
        try:
            # MAIL, RCPT, DATA: what sendmail does, without parsing the same two addresses twice more per mail.
            await client.mail(self.config.sender.addr_spec)
            await client.rcpt(job.to)
            await client.data(data)
            return SENT, client
        except Exception as exc:
            outcome = classify(exc)
            kind = "permanent" if outcome.permanent else "transient"
            log.info("mail %s to %s not sent (%s): %s", job.key, job.to, kind, outcome.error)
            if isinstance(exc, aiosmtplib.SMTPSenderRefused):
                self.down = outcome.error
            if isinstance(exc, aiosmtplib.SMTPResponseException) and client.is_connected:
                try:
                    await client.rset()  # end the envelope; the session goes on with the next mail
                    return outcome, client
                except (aiosmtplib.SMTPException, OSError):
                    pass
            await _quit(client)
            return outcome, None


async def _quit(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit()
    except Exception:  # the server may be gone already; nothing is owed to it
        client.close()
