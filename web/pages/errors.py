"""How pages answer errors: a page in the reader's language, with the status from ``web.errors.status_for``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from models.auth import SignedIn, session_holder, signed_in
from models.db import session_scope
from models.errors import ForumflowError, Said
from models.tables import Member
from models.textdiff import FIELDS
from notifications.signin import SIGN_IN_PATH
from web.deps import here, local_path, sign_in_redirect
from web.errors import CsrfError, SignInRequiredError, extra_headers, problem, status_for
from web.i18n import LANG_COOKIE, LANG_COOKIE_AGE, N_, Ui, UiReader
from web.pages.auth import SIGN_OUT_PATH
from web.pages.proposal import FIELD_LABELS
from web.security import SESSION_COOKIE, cookies_secure, set_cookie
from web.state import WebState

log = logging.getLogger(__name__)
T = TypeVar("T")


def _by_session_cookie(request: Request, state: WebState, look: Callable[[Session, str], T | None], what: str) -> T | None:
    """``look`` up something by this browser's session cookie, in a session of its own (the request's may be gone
    with the error); None without a cookie, or when the database cannot say (the error may be the database itself)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        with session_scope(state.runtime.engine) as session:
            return look(session, raw)
    except Exception:
        log.warning("cannot tell %s", what, exc_info=True)
        return None


def _reader(request: Request, state: WebState) -> SignedIn | None:
    """Who is reading, signed in now; None if unknown."""
    return _by_session_cookie(request, state, lambda s, raw: signed_in(s, raw, now=state.clock()), "who reads the error page")


def _former_member(request: Request, state: WebState) -> Member | None:
    """The member whose session (now ended) this browser still holds the cookie of; None if none."""
    return _by_session_cookie(request, state, session_holder, "whose session ended")


def _ui(request: Request, state: WebState, who: SignedIn | None, former: Member | None = None) -> Ui:
    return Ui.for_reader(request, who.member if who else former, state.templates.labels)


def error_page(
    request: Request, status: int, message: str | Said | ForumflowError, headers: dict[str, str] | None = None,
    *, kept: list[tuple[str, str]] | None = None, sign_in: str = "", former: Member | None = None,
) -> HTMLResponse:
    """The error page, in the reader's language (a ``str`` is a catalog message marked with N_, or "").

    ``kept``: texts of a form that was not sent, as (label marked with N_, text), shown to be copied; ``sign_in``:
    a link to sign in again and come back; ``former``: the member whose session ended, whose language and zone the
    page keeps (the language also for the pages that follow, as the switch would).
    """
    state: WebState = request.app.state.web
    who = _reader(request, state)
    ui = _ui(request, state, who, former)
    if isinstance(message, str):
        message = ui.gettext(message) if message else ""
    else:
        message = UiReader.of(ui, state.runtime.definition).say(message)
    context = {
        "viewer": who, "csrf_token": who.session.csrf_token if who else "", "here": here(request),
        "status": status, "message": message, "kept": [(ui.gettext(label), text) for label, text in kept or []],
        "sign_in": sign_in,
    }
    html = state.templates.render("error.html", ui, context)
    response = HTMLResponse(html, status_code=status, headers=headers)
    if former is not None and who is None and LANG_COOKIE not in request.cookies:
        set_cookie(response, LANG_COOKIE, ui.lang, max_age=LANG_COOKIE_AGE, secure=cookies_secure(request, state.https))
    return response


# The fields of the app's forms that hold what someone typed (kept when a form cannot be taken), with their labels.
TYPED_FIELDS = {name: FIELD_LABELS[name] for name in FIELDS} | {"comment": N_("Your comment")}


async def _form(request: Request) -> dict[str, str]:
    """The text fields of a refused request's form ({} when its body is not a form or cannot be read as one)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    try:
        form = await request.form()
    except Exception:  # a body that cannot be read as a form: nothing in it
        return {}
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _typed_texts(request: Request) -> list[tuple[str, str]]:
    """What was typed into a refused form's text fields, to show it rather than lose it."""
    form = await _form(request)
    kept = []
    for name, label in TYPED_FIELDS.items():
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            kept.append((label, value.replace("\r\n", "\n")))
    return kept


def _came_from(request: Request) -> str:
    """The path of the page the form was on (its Referer, when it is this app's), else the start page."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc and referer.netloc != request.headers.get("host", ""):
        return "/"
    return local_path(referer.path + (f"?{referer.query}" if referer.query else ""))


def install_page_handlers(app: FastAPI) -> None:
    """Error pages for the app's own routes (the API app has problem+json handlers of its own)."""

    async def sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequiredError)
        target = sign_in_redirect(exc.next_path)
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": target})  # htmx follows it as a full page load
        return RedirectResponse(target, status_code=303)

    async def csrf(request: Request, exc: Exception) -> Response:
        state: WebState = request.app.state.web
        who = _reader(request, state)
        # A form whose only purpose is already served (another tab used the sign-in link, or the session ended
        # before signing out) leads on instead of saying it expired.
        if request.url.path == SIGN_IN_PATH and who is not None:
            return RedirectResponse(local_path((await _form(request)).get("next")), status_code=303)
        if request.url.path == SIGN_OUT_PATH and who is None:
            return RedirectResponse("/sign-in", status_code=303)
        kept = await _typed_texts(request)
        if request.cookies.get(SESSION_COOKIE) and who is None:  # signed out or expired meanwhile
            back = _came_from(request)
            message = N_("Your session has ended, so this form was not sent. Sign in again and send it once more.")
            former = _former_member(request, state)
            return error_page(request, 403, message, kept=kept, sign_in=sign_in_redirect(back), former=former)
        return error_page(request, 403, N_("This form has expired. Go back, reload the page and try again."), kept=kept)

    async def domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ForumflowError)
        return error_page(request, status_for(exc), exc, extra_headers(exc))

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if request.url.path.startswith("/api/"):  # e.g. a path the API's mount cannot match (a newline in it)
            return problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
        return error_page(request, exc.status_code, "", dict(exc.headers or {}))

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        names = sorted({str(e["loc"][-1]) for e in exc.errors() if len(e.get("loc", ())) > 1})
        if not names:
            return error_page(request, 422, "")
        said = Said(N_("The address of this page has a value it cannot take: %(names)s."), names=", ".join(names))
        return error_page(request, 422, said)

    app.add_exception_handler(SignInRequiredError, sign_in_required)
    app.add_exception_handler(CsrfError, csrf)
    app.add_exception_handler(ForumflowError, domain)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(RequestValidationError, invalid)
