"""FastAPI dependencies shared by pages and API: the runtime, the clock, a DB session, who is signed in, CSRF.

Use the ``Annotated`` aliases in routes::

    @router.get("/things")
    def things(page: MemberPage, db: DbSession, now: Now) -> Response:
        ...
        return page.render("things.html", things=...)

``DbSession`` commits when the route returns (before the response is sent) and rolls back on an error.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import APIKeyCookie, HTTPBearer
from sqlmodel import Session

from models.auth import SignedIn, new_secret, signed_in
from models.errors import ForumflowError, Said
from models.runtime import Runtime
from models.tables import Member
from models.tokens import LiveToken, live_token, note_use, use_is_new
from web.errors import CsrfError, NotSignedInError, SignInRequiredError
from web.i18n import Ui, UiReader, group_names
from web.routing import finish
from web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    cookies_secure,
    is_bearer,
    set_cookie,
    tokens_match,
)
from web.state import WebState


# Every dependency below takes the request and finds what it needs there, rather than depending on ``State`` or
# ``Now``: FastAPI solves a dependency's own dependencies again wherever it is used, even when its value is cached,
# so a shallow graph is a cheaper one (it is solved on every request).
def _state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def request_time(request: Request) -> dt.datetime:
    """The moment of this request, read from the app's clock once (tests set the clock), then kept with the request."""
    scope = request.scope
    moment: dt.datetime | None = scope.get("forumflow.now")
    if moment is None:
        moment = scope["forumflow.now"] = _state(request).clock()
    return moment


async def web_state(request: Request) -> WebState:
    """The app's shared state."""
    return _state(request)


State = Annotated[WebState, Depends(web_state)]


async def get_runtime(request: Request) -> Runtime:
    """Settings, definition, lifecycle and engine of the app."""
    return _state(request).runtime


async def current_time(request: Request) -> dt.datetime:
    """The moment of this request, from the app's clock (tests set the clock)."""
    return request_time(request)


async def db_session(request: Request) -> AsyncIterator[Session]:
    """A database session for the request: committed after the route returns, rolled back on an error.

    Routes run in a worker thread that commits (or rolls back) the session itself before it hands the answer back
    (``web.routing.OneHopRoute``), so what is left here is usually closing a session without a transaction. At most
    as many requests hold a session at once as the connection pool keeps connections (``WebState.admission``):
    the others wait here, on the event loop, instead of making and closing connections beyond the pool.
    """
    state = _state(request)
    async with state.admission:
        session = Session(state.runtime.engine, expire_on_commit=False)
        try:
            yield session
        except BaseException:
            await finish(session, commit=False)
            raise
        await finish(session, commit=True)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Now = Annotated[dt.datetime, Depends(current_time)]
DbSession = Annotated[Session, Depends(db_session, scope="function")]


def reads_inline(db: Session) -> bool:
    """Whether a small read may run on the event loop itself rather than in a worker thread: on SQLite.

    There a read of one indexed row takes microseconds and, in WAL mode, never waits for a writer; the trip to a
    worker thread and back costs more, and delays the request more under load. On PostgreSQL a read is a round trip
    over the network: it goes to a worker thread. Writes always go to a worker thread (they may wait for a lock).
    """
    bind = db.get_bind()
    return bind.dialect.name == "sqlite"


async def viewer(request: Request, db: DbSession) -> SignedIn | None:
    """The signed-in member of this request (session cookie), or None; looked up afresh on every request."""
    now = request_time(request)  # read on every request, as a dependency on ``Now`` would
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    if reads_inline(db):
        return signed_in(db, raw, now=now)
    return await run_in_threadpool(signed_in, db, raw, now=now)


Viewer = Annotated[SignedIn | None, Depends(viewer)]


@dataclass(frozen=True)
class Caller:
    """Who calls the API: a member, through their browser session or one of their personal API tokens."""

    member: Member
    via: Literal["session", "token"]


# The two ways in, as the API's OpenAPI document names them (``web.api`` adds them to every operation there:
# as dependencies they would be run on every request, for nothing, since ``api_member`` reads the headers itself).
API_SECURITY = (
    HTTPBearer(auto_error=False, description="A personal API token (profile page, or `forumflow token create`)."),
    APIKeyCookie(
        name=SESSION_COOKIE, auto_error=False,
        description="The web app's session (unsafe requests also need X-CSRF-Token).",
    ),
)


@dataclass(frozen=True)
class Credentials:
    """What an API request shows of its caller, read off the request before any database work."""

    session_id: str | None  # the session cookie
    authorization: str | None  # the Authorization header, as sent
    csrf_token: str | None  # the CSRF token sent (header, or form field), for an unsafe request with a session
    checks_csrf: bool  # an unsafe request without a Bearer token: a session must show its CSRF token


async def credentials(request: Request) -> Credentials:
    """The caller's credentials as the request carries them (the form is read only for a form's CSRF field)."""
    session_id = request.cookies.get(SESSION_COOKIE) or None
    checks = request.method not in SAFE_METHODS and not is_bearer(request.headers.raw)
    given = await csrf_given(request) if checks and session_id else None
    return Credentials(session_id, request.headers.get("authorization"), given, checks)


def caller_of(db: Session, creds: Credentials, *, now: dt.datetime) -> tuple[Caller, LiveToken | None]:
    """The member calling the API, and the token they called with (None with a session); reads only.

    401 (``NotSignedInError``) or, for an unsafe request with a session and no valid CSRF token, 403 (``CsrfError``),
    checked before anything else. An ``Authorization`` header decides alone: a bad token is refused even beside a
    valid session cookie. Tokens are 256-bit: guessing is hopeless, so refusals are not counted (no write).
    """
    who = signed_in(db, creds.session_id, now=now) if creds.session_id else None
    if who is not None and creds.checks_csrf and not tokens_match(creds.csrf_token, who.session.csrf_token):
        raise CsrfError()
    if creds.authorization is not None:
        scheme, _, raw = creds.authorization.strip().partition(" ")
        found = live_token(db, raw.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise NotSignedInError("the API token is not valid (unknown, revoked, or its member left the forum)")
        token, member = found
        return Caller(member, "token"), token
    if who is None:
        raise NotSignedInError()
    return Caller(who.member, "session"), None


async def api_member(request: Request, db: DbSession) -> Caller:
    """The member calling the API (``caller_of``), or 401/403 problem+json.

    Every API route takes the caller, so this is where the API checks CSRF (requests with a Bearer token are
    exempt, a request with no session is left to answer 401), before anything else, as a router-wide dependency
    would (one dependency less to solve on every request). The use of a token is noted, to the minute: a write,
    in a worker thread.
    """
    now = request_time(request)
    creds = await credentials(request)
    if reads_inline(db):
        caller, token = caller_of(db, creds, now=now)
    else:
        caller, token = await run_in_threadpool(functools.partial(caller_of, db, creds, now=now))
    if token is not None and use_is_new(token, now):
        await run_in_threadpool(note_use, db, token, now)
    return caller


ApiMember = Annotated[Caller, Depends(api_member)]


def local_path(value: str | None, default: str = "/") -> str:
    """``value`` if it is a path on this app (no scheme, no other host), else ``default``: for ``next=`` redirects."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if any(ord(c) < 32 or c == "\\" for c in value) or len(value) > 2000:
        return default
    return value


def here(request: Request) -> str:
    """The path and query of this request (to come back to it)."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


@dataclass
class Page:
    """A page being answered: who is reading, in which language and zone, and the form token to embed."""

    request: Request
    state: WebState
    viewer: SignedIn | None
    ui: Ui
    csrf_token: str
    _new_csrf_cookie: bool = field(default=False, repr=False)

    @property
    def secure(self) -> bool:
        """Whether cookies set by this page are Secure."""
        return cookies_secure(self.request, self.state.https)

    def render(self, template: str, *, status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
        """The template rendered for this reader, with the layout's common variables."""
        html = self.state.templates.render(
            template, self.ui,
            {"viewer": self.viewer, "csrf_token": self.csrf_token, "here": here(self.request), **context},
        )
        response = HTMLResponse(html, status_code=status, headers=headers)
        if self._new_csrf_cookie:
            set_cookie(response, CSRF_COOKIE, self.csrf_token, max_age=None, secure=self.secure)
        return response

    @property
    def group_names(self) -> dict[str, str]:
        """Each working group's name in the reader's language, by key."""
        return group_names(self.state.runtime.definition, self.ui.lang)

    def say(self, said: Said | ForumflowError) -> str:
        """A message or an error's message in this reader's language, with people's and groups' names."""
        return UiReader.of(self.ui, self.state.runtime.definition).say(said)

    def redirect(self, url: str) -> RedirectResponse:
        """303 See Other to ``url`` (after a POST, or to go elsewhere)."""
        return RedirectResponse(url, status_code=303)


async def any_page(request: Request, who: Viewer) -> Page:
    """A page anyone may see (signed in or not)."""
    state = _state(request)
    ui = Ui.for_reader(request, who.member if who else None, state.templates.labels)
    if who is not None:
        return Page(request, state, who, ui, who.session.csrf_token)
    token = request.cookies.get(CSRF_COOKIE) or ""
    fresh = len(token) < 32
    return Page(request, state, None, ui, new_secret() if fresh else token, fresh)


AnyPage = Annotated[Page, Depends(any_page)]


async def member_page(page: AnyPage) -> Page:
    """A page for signed-in members: anyone else is sent to sign in and brought back."""
    if page.viewer is None:
        raise SignInRequiredError(here(page.request))
    return page


MemberPage = Annotated[Page, Depends(member_page)]


def sign_in_redirect(next_path: str) -> str:
    """Where to send someone who must sign in first."""
    return "/sign-in" + (f"?{urlencode({'next': next_path})}" if next_path != "/" else "")


async def csrf_given(request: Request) -> str | None:
    """The CSRF token an unsafe request carries: the ``X-CSRF-Token`` header, else a form's ``csrf_token`` field."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        given = str((await request.form()).get(CSRF_FIELD) or "")
    return given


async def csrf_protect(request: Request, who: Viewer) -> None:
    """Unsafe requests carry the CSRF token: the session's when signed in, else the pre-session cookie's.

    Sent as the ``csrf_token`` form field or the ``X-CSRF-Token`` header (htmx adds it from ``hx-headers``
    on ``<body>``). Requests with a Bearer token are exempt: no browser sends one on its own.
    """
    if request.method in SAFE_METHODS or is_bearer(request.headers.raw):
        return
    expected = who.session.csrf_token if who is not None else request.cookies.get(CSRF_COOKIE)
    if not tokens_match(await csrf_given(request), expected):
        raise CsrfError()


CsrfProtected = Depends(csrf_protect)

