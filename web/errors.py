"""Errors of the web app: the ONE mapping from domain exceptions to HTTP status, and how each side answers.

The API answers with ``application/problem+json`` (RFC 9457): ``type`` (``about:blank``), ``title`` (the
status phrase), ``status``, ``detail`` (the lifecycle's one-line message) and extension members. Pages
answer with an error page in the reader's language. An unexpected exception never shows a traceback:
it is logged, and the answer is a plain 500.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.auth import RateLimitedError
from models.errors import (
    PLAIN,
    ConflictError,
    ForumflowError,
    InvalidInputError,
    NotAllowedError,
    NotFoundError,
    NotPossibleError,
)
from models.runtime import DatabaseError
from web.security import is_bearer

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# Most specific first: NotPossibleError is a NotAllowedError that no member could get past (409, not 403).
STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (RateLimitedError, 429),
    (InvalidInputError, 422),
    (NotPossibleError, 409),
    (NotAllowedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (DatabaseError, 503),
)


NOT_SIGNED_IN = "sign in first"
BAD_CSRF = "missing or wrong CSRF token (send the X-CSRF-Token header of your session)"
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="forumflow"'}


class NotSignedInError(Exception):
    """The request needs a signed-in member and has none (API: 401)."""

    def __init__(self, detail: str = NOT_SIGNED_IN) -> None:
        super().__init__(detail)


class ApiProblem(Exception):
    """An API answer decided by the route itself (e.g. 412/428 of ``If-Match``), with extension members."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra


class SignInRequiredError(Exception):
    """A page needs a signed-in member: send the browser to sign in, then back to ``next_path``."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfError(Exception):
    """An unsafe request without the session's CSRF token (403)."""


def status_for(exc: Exception) -> int:
    """The HTTP status of a domain error (400 for one with no status of its own)."""
    for kind, status in STATUS_OF:
        if isinstance(exc, kind):
            return status
    return 400 if isinstance(exc, ForumflowError) else 500


def extra_headers(exc: Exception) -> dict[str, str]:
    """Headers an error brings along (Retry-After for a rate limit)."""
    if isinstance(exc, RateLimitedError):
        return {"Retry-After": str(exc.retry_after)}
    return {}


class Problem(BaseModel):
    """An RFC 9457 problem detail, as every API error is answered."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


def problem(status: int, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """A problem+json response for ``status``."""
    body = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail, **extra).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem+json answers of a route."""
    return {
        status: {"description": HTTPStatus(status).phrase, "content": {PROBLEM_JSON: {"schema": Problem.model_json_schema()}}}
        for status in statuses
    }


# ---------------------------------------------------------------------- API
def install_api_handlers(app: FastAPI) -> None:
    """problem+json for every error of the API app, domain errors by ``STATUS_OF``."""

    async def domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ForumflowError)
        return problem(status_for(exc), exc.for_reader(PLAIN), headers=extra_headers(exc))

    async def not_signed_in(request: Request, exc: Exception) -> Response:
        return problem(401, str(exc), headers=WWW_AUTHENTICATE)

    async def decided(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return problem(exc.status, exc.detail, headers=exc.headers, **exc.extra)

    async def csrf(request: Request, exc: Exception) -> Response:
        return problem(403, BAD_CSRF)

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem(400, "the body is not valid JSON", errors=errors)
        return problem(422, "the request is not valid", errors=errors)

    async def unexpected(request: Request, exc: Exception) -> Response:
        # Starlette sends this answer, then re-raises the exception for the server to log.
        return problem(500, "an unexpected error occurred; it has been logged")

    app.add_exception_handler(ForumflowError, domain)
    app.add_exception_handler(NotSignedInError, not_signed_in)
    app.add_exception_handler(ApiProblem, decided)
    app.add_exception_handler(CsrfError, csrf)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)


# ---------------------------------------------------------------------- everything
class UnexpectedErrors:
    """Outermost guard: an exception nobody handled is logged and answered with a bare 500, never a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            if started:  # answered already (the API's own handler): the server logs it
                raise
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if str(scope.get("path", "")).startswith("/api/"):
                response: Response = problem(500, "an unexpected error occurred; it has been logged")
            else:
                response = Response(
                    "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error</title></head><body>"
                    "<h1>Something went wrong</h1><p>The error has been logged. <a href=\"/\">Back to the app</a></p>"
                    "</body></html>",
                    status_code=500, media_type="text/html",
                )
            await response(scope, receive, tracking)


# ---------------------------------------------------------------------- before the API reads a body
def _json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class ApiGate:
    """What the API refuses before reading a request's body (which FastAPI parses before any dependency runs).

    An unsafe request with no credentials at all (no Bearer token, no session cookie) is answered 401, one with a
    session but no ``X-CSRF-Token`` header 403, and one whose body is not declared as JSON 415. Whether the
    credentials are valid is still for ``web.deps.api_member`` to say.
    """

    def __init__(self, app: ASGIApp, *, session_cookie: str, csrf_header: str, safe_methods: frozenset[str]) -> None:
        self.app = app
        self.session_cookie, self.csrf_header, self.safe_methods = session_cookie, csrf_header.encode(), safe_methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in self.safe_methods:
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", [])
        values = {k.lower(): v.decode("latin-1") for k, v in headers}
        refusal: Response | None = None
        if not is_bearer(headers):
            cookies = Request(scope).cookies
            if self.session_cookie not in cookies:
                refusal = problem(401, NOT_SIGNED_IN, headers=WWW_AUTHENTICATE)
            elif self.csrf_header not in values:
                refusal = problem(403, BAD_CSRF)
        has_body = values.get(b"content-length", "0") != "0" or b"transfer-encoding" in values
        if refusal is None and has_body and not _json_type(values.get(b"content-type", "")):
            refusal = problem(415, "send the body as JSON (Content-Type: application/json)")
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)
