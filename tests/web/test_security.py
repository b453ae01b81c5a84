"""CSRF refusals, security headers on every response, errors without tracebacks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import select

from models import Lifecycle, session_scope
from models.auth import WebSession
from models.tables import BODY_MAX, Proposal
from tests.web.api_support import API, assert_problem, bearer, token_for
from tests.web.conftest import BASE, Clock, csrf_of, link_for, sign_in
from web.app import create_app
from web.security import CONTENT_SECURITY_POLICY, MAX_BODY, SESSION_COOKIE


def signed_in(client: TestClient, forum: Engine, clock: Clock) -> str:
    """Sign in as kuznetsov; the session's CSRF token."""
    sign_in(client, forum, "kuznetsov", clock.now)
    return csrf_of(client.get("/").text)


def proposal_count(forum: Engine) -> int:
    """Proposals stored."""
    with session_scope(forum) as s:
        return len(s.exec(select(Proposal)).all())


def still_signed_in(client: TestClient) -> bool:
    """Whether the client's session is alive."""
    return client.get("/").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"},  # Origin decides when present
    ],
)
def test_cross_site_post_is_refused_even_with_the_token(
    client: TestClient, forum: Engine, clock: Clock, headers: dict[str, str]
) -> None:
    token = signed_in(client, forum, clock)
    r = client.post("/sign-out", data={"csrf_token": token}, headers=headers)
    assert r.status_code == 403
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert still_signed_in(client)
    api = client.post("/api/v1/me/actions", headers=headers | {"X-CSRF-Token": token})
    assert api.status_code == 403 and api.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "headers", [{"Origin": BASE}, {"Origin": BASE.upper()}, {"Sec-Fetch-Site": "same-origin"}, {}]
)
def test_same_origin_post_with_the_token_passes(
    client: TestClient, forum: Engine, clock: Clock, headers: dict[str, str], web_runtime: object
) -> None:
    token = signed_in(client, forum, clock)
    r = client.post("/sign-out", data={"csrf_token": token}, headers=headers)
    assert r.status_code == 303
    assert not still_signed_in(client)


def test_base_url_origin_is_accepted_behind_a_proxy(forum: Engine, web_runtime: object, clock: Clock) -> None:
    from models.runtime import Runtime

    rt: Runtime = web_runtime  # type: ignore[assignment]
    settings = rt.settings.model_copy(update={"base_url": "https://forum.example.org"})
    client = TestClient(
        create_app(runtime=Runtime(settings, rt.definition, rt.lifecycle, forum), clock=clock),
        base_url="https://testserver", follow_redirects=False,
    )
    token = signed_in(client, forum, clock)
    r = client.post("/sign-out", data={"csrf_token": token}, headers={"Origin": "https://forum.example.org"})
    assert r.status_code == 303


@pytest.mark.parametrize("token", [None, "", "wrong"])
def test_post_without_the_session_token_is_refused(client: TestClient, forum: Engine, clock: Clock, token: str | None) -> None:
    signed_in(client, forum, clock)
    data = {} if token is None else {"csrf_token": token}
    r = client.post("/sign-out", data=data, headers={"Origin": BASE})
    assert r.status_code == 403 and "Срок действия формы истёк" in r.text  # kuznetsov reads Russian
    assert still_signed_in(client)


def test_token_of_another_session_is_refused(client: TestClient, forum: Engine, clock: Clock) -> None:
    signed_in(client, forum, clock)
    other = TestClient(client.app, base_url=BASE, follow_redirects=False)
    foreign = signed_in(other, forum, clock)
    assert client.post("/sign-out", data={"csrf_token": foreign}).status_code == 403
    assert still_signed_in(client)


def test_htmx_header_carries_the_token(client: TestClient, forum: Engine, clock: Clock) -> None:
    token = signed_in(client, forum, clock)
    page = client.get("/").text
    hx = re.search(r"<body hx-headers='([^']+)'>", page)
    assert hx and f'"X-CSRF-Token": "{token}"' in hx.group(1)  # htmx sends it with every request
    assert client.post("/sign-out", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert client.post("/sign-out", headers={"X-CSRF-Token": token}).status_code == 303


def test_anonymous_forms_need_the_pre_session_token(client: TestClient, forum: Engine, clock: Clock) -> None:
    link = link_for(forum, "kuznetsov", clock.now)
    page = client.get(link)
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token
    # A form posted from elsewhere (no matching cookie/token pair) signs nobody in, and leaves the link usable.
    blind = TestClient(client.app, base_url=BASE, follow_redirects=False)
    assert blind.post("/sign-in/continue", data={"token": token.group(1), "csrf_token": "guess"}).status_code == 403
    assert client.post("/sign-in/continue", data={"token": token.group(1)}).status_code == 403
    assert client.post("/sign-in", data={"address": "a.petrov@example.org"}).status_code == 403
    with session_scope(forum) as s:
        assert s.exec(select(WebSession)).all() == []
    ok = client.post("/sign-in/continue", data={"token": token.group(1), "csrf_token": csrf_of(page.text)})
    assert ok.status_code == 303 and SESSION_COOKIE in client.cookies


HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}


@pytest.mark.parametrize(
    "path",
    ["/", "/sign-in", "/sign-in/sent", "/sign-in/continue?token=x", "/no-such-page", "/static/htmx.min.js",
     "/static/forumflow.css", "/api/v1/me/actions", "/api/v1/openapi.json", "/api/v1/no-such", "/language/ru"],
)
def test_security_headers_on_every_response(client: TestClient, path: str) -> None:
    r = client.get(path)
    for name, value in HEADERS.items():
        assert r.headers.get(name) == value, (path, name)
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "script-src 'self';" in r.headers["content-security-policy"]
    assert "unsafe-inline" not in r.headers["content-security-policy"]


def test_signed_in_pages_are_not_cached(client: TestClient, forum: Engine, clock: Clock) -> None:
    signed_in(client, forum, clock)
    assert client.get("/").headers["cache-control"] == "no-store"


def test_pages_have_no_inline_script_or_style(client: TestClient, forum: Engine, clock: Clock) -> None:
    pages = [client.get("/sign-in").text, client.get("/sign-in/sent").text, client.get(link_for(forum, "petrov", clock.now)).text]
    signed_in(client, forum, clock)
    pages.append(client.get("/").text)
    for html in pages:
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/htmx.min.js" defer>']
        assert " style=" not in html and "<style" not in html
        assert not re.search(r"<[^>]+\son[a-z]+=", html)  # no inline event handlers


def test_unexpected_error_is_a_bare_500(forum: Engine, web_runtime: object) -> None:
    def broken() -> object:
        raise RuntimeError("secret detail: /etc/forumflow")

    app = create_app(runtime=web_runtime, clock=broken)  # type: ignore[arg-type]
    client = TestClient(app, base_url=BASE, raise_server_exceptions=False)
    page = client.get("/")
    assert page.status_code == 500 and "secret detail" not in page.text and "Traceback" not in page.text
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    api = client.get("/api/v1/me/actions")
    assert api.status_code == 500 and api.headers["content-type"] == "application/problem+json"
    assert api.json() == {"type": "about:blank", "title": "Internal Server Error", "status": 500,
                          "detail": "an unexpected error occurred; it has been logged"}
    assert api.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def _chunked(data: bytes, size: int = 65_536) -> Iterator[bytes]:
    """``data`` as a body without Content-Length (sent chunked)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_bodies_over_the_limit_are_refused_before_anything_reads_them(
    client: TestClient, forum: Engine, clock: Clock, lifecycle: Lifecycle,
) -> None:
    headers = bearer(token_for(forum, "zhao.lei")) | {"Content-Type": "application/json"}
    longest = json.dumps({"group": "industry", "title": "Longest", "body": "\U0001f600" * BODY_MAX})  # 12 bytes each
    assert len(longest) <= MAX_BODY
    r = client.post(f"{API}/proposals", headers=headers, content=longest)  # the longest text the API takes: not refused
    assert r.status_code == 201, r.text[:200]
    before = proposal_count(forum)
    over = b'{"group": "industry", "title": "x", "body": "' + b"a" * MAX_BODY + b'"}'
    assert_problem(client.post(f"{API}/proposals", headers=headers, content=over), 413, detail="too large")
    assert_problem(client.post(f"{API}/proposals", headers=headers, content=_chunked(over)), 413, detail="too large")
    small = json.dumps({"group": "industry", "title": "Sent in chunks"}).encode()
    assert client.post(f"{API}/proposals", headers=headers, content=_chunked(small, 7)).status_code == 201
    assert proposal_count(forum) == before + 1
    token = signed_in(client, forum, clock)
    page = client.post("/proposals/new", data={"csrf_token": token, "group": "industry", "title": "x", "body": "b" * MAX_BODY})
    assert page.status_code == 413 and page.headers["content-type"].startswith("text/html")
    assert proposal_count(forum) == before + 1


def test_the_api_refuses_what_it_cannot_take_before_reading_the_body(client: TestClient, forum: Engine, clock: Clock) -> None:
    url = f"{API}/proposals/1"
    bad_json = {"Content-Type": "application/json", "If-Match": '"1-1"'}
    # Nobody signed in: 401, whatever the body.
    r = client.patch(url, headers=bad_json, content=b"{not json")
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_problem(client.post(f"{API}/proposals", content=b"x" * 1000, headers={"Content-Type": "text/plain"}), 401)
    # A session without its CSRF header: 403, before the (form) body is looked at.
    signed_in(client, forum, clock)
    form = client.post(f"{API}/proposals", data={"group": "industry", "title": "x"})
    assert_problem(form, 403, detail="CSRF")
    client.cookies.clear()
    # A token: a body that is not declared as JSON is 415, one that is not JSON 400 (README), bad fields 422.
    auth = bearer(token_for(forum, "zhao.lei"))
    plain = client.post(f"{API}/proposals", headers=auth | {"Content-Type": "text/plain"}, content=b'{"title": "x"}')
    assert_problem(plain, 415, detail="JSON")
    assert_problem(client.post(f"{API}/proposals", headers=auth, data={"group": "industry", "title": "x"}), 415)
    assert_problem(client.post(f"{API}/proposals", headers=auth | bad_json, content=b"{not json"), 400, detail="not valid JSON")
    assert_problem(client.post(f"{API}/proposals", headers=auth, json={"group": "industry"}), 422)
    assert proposal_count(forum) == 0
