"""How pages answer errors: a page in the reader's language, with the status from ``web.errors.status_for``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from models.errors import ForumflowError
from web.deps import here, sign_in_redirect
from web.errors import CsrfError, SignInRequiredError, extra_headers, status_for
from web.i18n import Ui
from web.state import WebState


def error_page(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    """The error page (rendered for an anonymous reader: errors may come before anyone is known)."""
    state: WebState = request.app.state.web
    ui = Ui.for_reader(request, None, state.templates.labels)
    html = state.templates.render("error.html", ui, {"viewer": None, "csrf_token": "", "here": here(request),
                                                     "status": status, "message": message})
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
        state: WebState = request.app.state.web
        message = Ui.for_reader(request, None, state.templates.labels).gettext(
            "This form has expired. Go back, reload the page and try again."
        )
        return error_page(request, 403, message)

    async def domain(request: Request, exc: Exception) -> Response:
        return error_page(request, status_for(exc), str(exc), extra_headers(exc))

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return error_page(request, exc.status_code, "", dict(exc.headers or {}))

    async def invalid(request: Request, exc: Exception) -> Response:
        return error_page(request, 422, "")

    app.add_exception_handler(SignInRequiredError, sign_in_required)
    app.add_exception_handler(CsrfError, csrf)
    app.add_exception_handler(ForumflowError, domain)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(RequestValidationError, invalid)
