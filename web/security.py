"""Browser-facing protection: security headers on every response, the Origin check of unsafe requests, cookies.

The second half of CSRF protection, the per-session token in forms and in htmx's ``X-CSRF-Token``
header, is the ``csrf_protect`` dependency in ``web.deps``.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable
from http import HTTPStatus

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

SESSION_COOKIE = "forumflow_session"
# Before sign-in there is no session: forms then carry this cookie's random value (double submit).
CSRF_COOKIE = "forumflow_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# The largest request body taken, in bytes: the longest text (200,000 characters) sent as a form (up to 9 bytes a
# character, percent-encoded UTF-8) or as JSON (up to 12, escaped surrogate pairs), with room. Larger ones are
# refused (413) before anything reads them.
MAX_BODY = 2_500_000

# Scripts and styles only from the app itself: no inline script, no inline style, nothing from another host.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def is_bearer(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the request authenticates with ``Authorization: Bearer`` (scripts; browsers never add it by themselves)."""
    return any(k == b"authorization" and v[:7].lower() == b"bearer " for k, v in headers)


def same_origin(origin: str | None, fetch_site: str | None, allowed: set[str]) -> bool:
    """Whether an unsafe request comes from the app's own pages, by ``Origin`` or else ``Sec-Fetch-Site``.

    A request with neither header (an old browser, a script) passes here and must still carry the CSRF token.
    """
    if origin is not None:
        return origin.lower() in allowed
    if fetch_site is not None:
        return fetch_site.lower() in ("same-origin", "none")
    return True


def _own_origin(scope: Scope) -> str:
    """The origin the request itself was sent to (scheme and Host header)."""
    host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
    return f"{scope.get('scheme', 'http')}://{host}".lower()


class SecurityMiddleware:
    """Adds the security headers to every response, refuses cross-site unsafe requests (403) and bodies over
    ``MAX_BODY`` (413: by their ``Content-Length``, or while a chunked one is read)."""

    def __init__(self, app: ASGIApp, *, origin: str) -> None:
        self.app = app
        self.origin = origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if b"cache-control" not in present and not path.startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))  # pages hold personal data and tokens
                message["headers"] = headers
            await send(message)

        if scope["method"] not in SAFE_METHODS:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if not is_bearer(scope.get("headers", [])) and not same_origin(
                headers.get("origin"), headers.get("sec-fetch-site"), {self.origin, _own_origin(scope)}
            ):
                log.warning("refused a cross-site %s %s from %s", scope["method"], path, headers.get("origin"))
                await cross_site_refusal(path)(scope, receive, send_with_headers)
                return
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                await too_large(path)(scope, receive, send_with_headers)
                return
            if length is None and "chunked" in headers.get("transfer-encoding", "").lower():
                body = await _read_at_most(receive, MAX_BODY)
                if body is None:
                    await too_large(path)(scope, receive, send_with_headers)
                    return
                receive = _replay(body)
        await self.app(scope, receive, send_with_headers)


async def _read_at_most(receive: Receive, limit: int) -> bytes | None:
    """The request's whole body, or None as soon as it grows past ``limit`` bytes (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A ``receive`` that gives ``body`` once, then waits for the client to go (as the server's own would)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def cross_site_refusal(path: str) -> Response:
    """The answer to an unsafe request from another site: problem+json under the API, a short page elsewhere."""
    return _refusal(path, 403, "This request came from another site and was refused.")


def too_large(path: str) -> Response:
    """The answer to a request whose body is over ``MAX_BODY``."""
    return _refusal(path, 413, f"The request is too large: at most {MAX_BODY:,} bytes are taken.")


def _refusal(path: str, status: int, detail: str) -> Response:
    """A refusal before the app sees the request: problem+json under the API, a short page elsewhere."""
    title = HTTPStatus(status).phrase
    if path.startswith("/api/"):
        body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
        return Response(json.dumps(body), status_code=status, media_type="application/problem+json")
    page = (
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{detail}</p><p><a href=\"/\">Back to the app</a></p></body></html>"
    )
    return Response(page, status_code=status, media_type="text/html")


def cookies_secure(request: Request, base_https: bool) -> bool:
    """Cookies are Secure when the request came over https or the app's base URL is https."""
    return base_https or request.url.scheme == "https"


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None, secure: bool) -> None:
    """An HttpOnly, SameSite=Lax cookie for the whole app."""
    response.set_cookie(name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="lax")


def delete_cookie(response: Response, name: str, *, secure: bool) -> None:
    """Remove a cookie set by ``set_cookie``."""
    response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="lax")


def tokens_match(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a submitted CSRF token with the expected one."""
    return bool(given) and bool(expected) and secrets.compare_digest(str(given), str(expected))
