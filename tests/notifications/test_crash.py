"""A dispatcher killed with SIGKILL in the middle of sending repeats at most the mails it had in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text
from sqlalchemy.engine import Engine

from config.settings import Settings
from models import Lifecycle, session_scope
from models.outbox import DeliveryStatus
from notifications import RetryPolicy, plan_deliveries, send_pending
from tests.factories import T0, make_proposal
from tests.notifications.helpers import ControlledHandler, SmtpServer, deliveries

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 4
KILL_AFTER = 30
# The dispatcher, as its own process: sends what is due at T0 over CONNECTIONS connections.
DISPATCHER = """
import datetime as dt, sys
from config import DEFAULT_FORUM_FILE, load_definition
from config.settings import Settings
from models import Lifecycle, make_engine
from notifications import send_pending
url, schema, port, data_dir, now, CONNECTIONS = *sys.argv[1:6], int(sys.argv[6])
engine = make_engine(url, schema=schema or None)
settings = Settings(data_dir=data_dir, smtp_host="127.0.0.1", smtp_port=int(port), smtp_connections=CONNECTIONS, smtp_timeout=10)
send_pending(engine, settings, Lifecycle(load_definition(DEFAULT_FORUM_FILE)), now=dt.datetime.fromisoformat(now))
"""


class KillingHandler(ControlledHandler):
    """Accepts every mail; when the ``KILL_AFTER``-th has arrived, kills the dispatcher before answering it."""

    def __init__(self) -> None:
        super().__init__()
        self.victim: subprocess.Popen[bytes] | None = None
        self.killed = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if len(self.received) >= KILL_AFTER and self.victim is not None and not self.killed.is_set():
            os.kill(self.victim.pid, signal.SIGKILL)
            self.killed.set()
        return answer


def _url_and_schema(engine: Engine) -> tuple[str, str]:
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name != "postgresql":
        return url, ""
    with engine.connect() as conn:
        return url, str(conn.execute(text("select current_schema()")).scalar_one())


def test_kill_9_while_sending_repeats_at_most_the_mails_in_flight(
    forum: Engine, lifecycle: Lifecycle, tmp_path: Path
) -> None:
    for n in range(5):
        make_proposal(forum, lifecycle, state="reviewed", title=f"Measure {n}")
    with session_scope(forum) as s:
        total = plan_deliveries(s, lifecycle, now=T0)
    assert total == 100
    handler = KillingHandler()
    server = SmtpServer()
    server.handler = handler
    server.start()
    url, schema = _url_and_schema(forum)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", DISPATCHER, url, schema, str(server.port), str(tmp_path), T0.isoformat(), str(CONNECTIONS)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        handler.victim = proc
        try:
            _, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL, stderr.decode(errors="replace")[-2000:]
        arrived_before_restart = len(handler.received)
        # The killed run's leases end; the next run sends what is left.
        settings = Settings(data_dir=tmp_path, smtp_host=server.host, smtp_port=server.port, smtp_connections=CONNECTIONS)
        report = send_pending(forum, settings, lifecycle, now=T0 + RetryPolicy().lease)
    finally:
        server.stop()

    rows = deliveries(forum)
    assert {r.status for r in rows} == {DeliveryStatus.SENT}
    ids = Counter(r.message["Message-ID"] for r in handler.received)
    assert set(ids) == {r.message_id for r in rows}  # every mail arrived
    repeated = sum(n - 1 for n in ids.values())
    assert KILL_AFTER <= arrived_before_restart < total
    assert repeated <= CONNECTIONS, f"{repeated} mails arrived twice; at most {CONNECTIONS} were in flight"
    assert report.sent == total - (arrived_before_restart - repeated)
