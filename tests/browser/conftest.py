"""Browser fixtures: the web app served by uvicorn on loopback over a fresh SQLite forum, a local mail sink, Chromium.

Playwright drives Debian's Chromium (``/usr/bin/chromium``, installed by ``.ci/run``); it never downloads a
browser. Without Chromium the suite is skipped locally; in CI it fails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from models import session_scope
from models.auth import grant_sign_in
from models.runtime import Runtime, open_runtime
from models.tables import Member
from notifications import dispatch_once
from notifications.signin import sign_in_url
from notifications.sink import MailSink
from tests.factories import make_proposal
from web.server import BackgroundWebServer

CHROMIUM = Path(os.environ.get("FORUMFLOW_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def wall_clock() -> dt.datetime:
    """The real time: the app runs on the wall clock here, as in production."""
    return dt.datetime.now(dt.UTC)


@dataclass
class Site:
    """The running app, its database and its mail sink."""

    runtime: Runtime
    server: BackgroundWebServer
    sink: MailSink
    proposals: dict[str, int]

    @property
    def url(self) -> str:
        """Where the app answers."""
        return self.server.url

    def dispatch(self) -> int:
        """Send what the outbox holds into the mail sink (as ``forumflow dispatch`` does); how many went."""
        return dispatch_once(self.runtime.engine, self.server.settings, self.runtime.lifecycle, now=wall_clock()).send.sent

    def mails_to(self, address: str) -> list[email.message.EmailMessage]:
        """Every mail the sink holds for ``address``."""
        found = []
        for message in self.sink.messages():
            parsed = email.message_from_bytes(message.as_bytes(), policy=policy.default)
            assert isinstance(parsed, email.message.EmailMessage)
            if parsed["Delivered-To"] == address:
                found.append(parsed)
        return found

    def sign_in_links(self, address: str) -> list[str]:
        """The sign-in links mailed to ``address`` (the other mails are about proposals)."""
        links = []
        for mail in self.mails_to(address):
            body = mail.get_body(preferencelist=("plain",))
            assert body is not None
            links += re.findall(rf"{re.escape(self.url)}/sign-in/continue\?token=[\w-]+", body.get_content())
        return links

    def grant_link(self, handle: str) -> str:
        """A one-time sign-in link for ``handle``, as ``forumflow web-link`` prints it."""
        with session_scope(self.runtime.engine) as s:
            member = s.get(Member, handle)
            assert member is not None
            grant = grant_sign_in(s, member, now=wall_clock(), valid=dt.timedelta(minutes=15))
        return sign_in_url(self.url, grant.token)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A fresh forum with a few proposals (one waiting for the heads of region), served on a free loopback port."""
    folder = tmp_path_factory.mktemp("site")
    with MailSink(folder / "maildir", port=0) as sink:
        settings = Settings(data_dir=folder, smtp_host=sink.host, smtp_port=sink.port)
        runtime = open_runtime(settings)
        now = wall_clock()
        proposals = {
            state: make_proposal(runtime.engine, runtime.lifecycle, state=state, now=now, title=f"Joint seed bank ({state})")
            for state in ("reviewed", "in_review", "drafted")
        }
        # A round that ran past its deadline (nobody ran the review since): "overdue" on My actions.
        proposals["overdue"] = make_proposal(
            runtime.engine, runtime.lifecycle, state="reviewed", now=now - dt.timedelta(days=40), title="Cold-chain corridor",
        )
        server = BackgroundWebServer(runtime, port=0).start()
        try:
            yield Site(runtime, server, sink, proposals)
        finally:
            server.stop()
            runtime.engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, started by Playwright (which downloads nothing).

    Module scope: while Playwright's sync API is in use, its event loop counts as running in this thread, so
    tests that call ``asyncio.run`` (Prefect flows, SMTP) must not run before it is closed.
    """
    if not CHROMIUM.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium fonts-wqy-microhei)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def fresh_page(browser: Any) -> Iterator[Any]:
    """A page in a fresh browser profile (no cookies) reading English, on a small phone-sized screen."""
    context = browser.new_context(locale="en-GB", viewport={"width": 390, "height": 844})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser profile (no cookies) reading English, on a small phone-sized screen."""
    with fresh_page(browser) as fresh:
        yield fresh
