"""How pages answer errors: a page in the reader's language, with the status from ``web.errors.status_for``."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from models.auth import SignedIn, signed_in
from models.db import session_scope
from models.errors import ForumflowError, Said
from web.deps import here, sign_in_redirect
from web.errors import CsrfError, SignInRequiredError, extra_headers, problem, status_for
from web.i18n import N_, Ui, UiReader
from web.security import SESSION_COOKIE
from web.state import WebState

log = logging.getLogger(__name__)


def _reader(request: Request, state: WebState) -> SignedIn | None:
    """Who is reading, looked up afresh (the request's own session may be gone with the error); None if unknown."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        with session_scope(state.runtime.engine) as session:
            return signed_in(session, raw, now=state.clock())
    except Exception:  # the error may be the database itself: show the page to an anonymous reader
        log.warning("cannot tell who reads the error page", exc_info=True)
        return None


def _ui(request: Request, state: WebState, who: SignedIn | None) -> Ui:
    return Ui.for_reader(request, who.member if who else None, state.templates.labels)


def error_page(
    request: Request, status: int, message: str | Said | ForumflowError, headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The error page, in the reader's language (a ``str`` is a catalog message marked with N_, or "")."""
    state: WebState = request.app.state.web
    who = _reader(request, state)
    ui = _ui(request, state, who)
    if isinstance(message, str):
        message = ui.gettext(message) if message else ""
    else:
        message = UiReader.of(ui, state.runtime.definition).say(message)
    context = {
        "viewer": who, "csrf_token": who.session.csrf_token if who else "", "here": here(request),
        "status": status, "message": message,
    }
    html = state.templates.render("error.html", ui, context)
    return HTMLResponse(html, status_code=status, headers=headers)


def install_page_handlers(app: FastAPI) -> None:
    """Error pages for the app's own routes (the API app has problem+json handlers of its own)."""

    async def sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequiredError)
        target = sign_in_redirect(exc.next_path)
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": target})  # htmx follows it as a full page load
        return RedirectResponse(target, status_code=303)

    async def csrf(request: Request, exc: Exception) -> Response:
        return error_page(request, 403, N_("This form has expired. Go back, reload the page and try again."))

    async def domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ForumflowError)
        return error_page(request, status_for(exc), exc, extra_headers(exc))

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if request.url.path.startswith("/api/"):  # e.g. a path the API's mount cannot match (a newline in it)
            return problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
        return error_page(request, exc.status_code, "", dict(exc.headers or {}))

    async def invalid(request: Request, exc: Exception) -> Response:
        return error_page(request, 422, "")

    app.add_exception_handler(SignInRequiredError, sign_in_required)
    app.add_exception_handler(CsrfError, csrf)
    app.add_exception_handler(ForumflowError, domain)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(RequestValidationError, invalid)
