"""Web fixtures: the app on the test database (SQLite and PostgreSQL), a settable clock, signed-in clients."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from config import ForumDefinition
from config.settings import Settings
from models import Lifecycle, session_scope
from models.auth import grant_sign_in
from models.runtime import Runtime
from models.tables import Member
from notifications.signin import sign_in_url
from tests.factories import T0
from tests.notifications.helpers import SmtpServer
from web.app import create_app

BASE = "http://testserver"


class Clock:
    """A clock the tests move by hand."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move forward by a timedelta's keyword arguments."""
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    """Starts at T0 (RU-CHE presiding)."""
    return Clock(T0)


@pytest.fixture
def web_settings(tmp_path: Path) -> Settings:
    """Settings whose base URL is the test client's."""
    return Settings(data_dir=tmp_path, base_url=BASE, smtp_port=1)


@pytest.fixture
def web_runtime(forum: Engine, definition: ForumDefinition, web_settings: Settings) -> Runtime:
    """The runtime on the test's database (SQLite or a PostgreSQL schema) holding the shipped forum."""
    return Runtime(web_settings, definition, Lifecycle(definition), forum)


@pytest.fixture
def app(web_runtime: Runtime, clock: Clock) -> FastAPI:
    """The web app on the test database, at the test clock."""
    return create_app(runtime=web_runtime, clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A browser without a session; redirects are not followed, so each step can be checked."""
    with TestClient(app, base_url=BASE, follow_redirects=False, raise_server_exceptions=False) as c:
        yield c


def csrf_of(html: str) -> str:
    """The CSRF token embedded in a page's forms."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def link_for(engine: Engine, handle: str, now: dt.datetime, *, minutes: float = 15, next_path: str = "/") -> str:
    """A fresh one-time sign-in link for ``handle`` (as ``forumflow web-link`` makes it)."""
    with session_scope(engine) as s:
        member = s.get(Member, handle)
        assert member is not None
        grant = grant_sign_in(s, member, now=now, valid=dt.timedelta(minutes=minutes))
    return sign_in_url(BASE, grant.token, next_path)


def follow_link(client: TestClient, link: str) -> Any:
    """Open a sign-in link and press "Continue"; the POST's response."""
    page = client.get(link)
    assert page.status_code == 200, page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    nxt = re.search(r'name="next" value="([^"]*)"', page.text)
    assert token and nxt
    return client.post(
        "/sign-in/continue", data={"token": token.group(1), "next": nxt.group(1), "csrf_token": csrf_of(page.text)}
    )


def sign_in(client: TestClient, engine: Engine, handle: str, now: dt.datetime) -> TestClient:
    """Sign ``client`` in as ``handle`` through a one-time link."""
    response = follow_link(client, link_for(engine, handle, now))
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A loopback SMTP server that keeps what it receives."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()
