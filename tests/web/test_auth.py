"""Sign-in without passwords: the mailed link, single use, expiry, scanners, rate limits, sessions, sign-out."""

from __future__ import annotations

import email
import re
from email import policy

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from models import session_scope
from models.auth import SignInToken, WebSession, secret_hash
from models.outbox import Delivery, DeliveryKind, DeliveryStatus
from models.runtime import Runtime
from models.sync import sync_definition
from notifications.dispatch import send_pending
from tests.notifications.helpers import SmtpServer
from tests.web.conftest import BASE, Clock, csrf_of, follow_link, link_for, sign_in
from web.app import create_app
from web.security import CSRF_COOKIE, SESSION_COOKIE


def ask_link(client: TestClient, address: str, **headers: str) -> object:
    """Fill in the sign-in form with ``address``."""
    page = client.get("/sign-in")
    return client.post("/sign-in", data={"address": address, "csrf_token": csrf_of(page.text)}, headers=headers)


def messages(engine: Engine) -> list[Delivery]:
    """The ``message`` deliveries in the outbox, oldest first."""
    with session_scope(engine) as s:
        return list(s.exec(select(Delivery).where(Delivery.kind == DeliveryKind.MESSAGE).order_by(col(Delivery.id))))


def test_sign_in_end_to_end_through_the_outbox_and_smtp(
    client: TestClient, forum: Engine, web_runtime: Runtime, clock: Clock, smtp_server: SmtpServer,
) -> None:
    r = ask_link(client, "A.Petrov@Example.org ")  # any case, stray spaces
    assert r.status_code == 303 and r.headers["location"] == "/sign-in/sent"
    assert "Check your mail" in client.get("/sign-in/sent").text
    [queued] = messages(forum)
    assert queued.recipient == "petrov" and queued.status == DeliveryStatus.PENDING and queued.message is not None

    settings = web_runtime.settings.model_copy(update={"smtp_host": smtp_server.host, "smtp_port": smtp_server.port})
    report = send_pending(forum, settings, web_runtime.lifecycle, now=clock.now)
    assert report.sent == 1
    [received] = smtp_server.to("a.petrov@example.org")
    mail = email.message_from_bytes(received.data, policy=policy.default)
    assert mail["Content-Language"] == "ru" and "Ссылка для входа" in str(mail["Subject"])
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Алексей Петров" in text and "(Екатеринбург" in text  # expiry in his zone, zone named
    link = re.search(rf"({BASE}/sign-in/continue\?\S+)", text)
    assert link, text
    # Once sent, the outbox no longer holds the message (nor the token in it); the token rests only as a hash.
    [sent] = messages(forum)
    assert sent.status == DeliveryStatus.SENT and sent.message is None
    token = re.search(r"token=([\w-]+)", link.group(1))
    assert token
    with session_scope(forum) as s:
        row = s.exec(select(SignInToken)).one()
        assert row.token_hash == secret_hash(token.group(1)) and token.group(1) not in row.token_hash

    signed = follow_link(client, link.group(1))
    assert signed.status_code == 303 and signed.headers["location"] == "/"
    home = client.get("/")
    assert home.status_code == 200 and "Алексей Петров" in home.text


def test_unknown_address_gets_the_same_answer_and_no_mail(client: TestClient, forum: Engine) -> None:
    known, unknown = ask_link(client, "a.petrov@example.org"), ask_link(client, "nobody@example.org")
    assert (known.status_code, known.headers["location"]) == (unknown.status_code, unknown.headers["location"])
    assert known.text == unknown.text
    assert [d.recipient for d in messages(forum)] == ["petrov"]


def test_not_an_address_is_refused_with_the_form_again(client: TestClient, forum: Engine) -> None:
    r = ask_link(client, "not an address")
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text and "name@example.org" in r.text
    assert messages(forum) == []


def test_the_link_is_single_use(client: TestClient, forum: Engine, clock: Clock) -> None:
    link = link_for(forum, "kuznetsov", clock.now)
    first = client.get(link)
    token = re.search(r'name="token" value="([^"]+)"', first.text)
    assert token
    form = {"token": token.group(1), "next": "/", "csrf_token": csrf_of(first.text)}
    assert client.post("/sign-in/continue", data=form).status_code == 303
    again = client.post("/sign-in/continue", data=form | {"csrf_token": csrf_of(client.get("/").text)})
    assert again.status_code == 410 and "/sign-in\"" in again.text
    assert client.get(link).status_code == 410
    with session_scope(forum) as s:
        assert s.exec(select(SignInToken)).one().used_at == clock.now


def test_the_link_expires_after_15_minutes(client: TestClient, forum: Engine, clock: Clock) -> None:
    link = link_for(forum, "kuznetsov", clock.now)
    clock.advance(minutes=14, seconds=59)
    page = client.get(link)
    assert page.status_code == 200
    clock.advance(seconds=1)
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token
    late = client.post("/sign-in/continue", data={"token": token.group(1), "next": "/", "csrf_token": csrf_of(page.text)})
    assert late.status_code == 410
    assert SESSION_COOKIE not in client.cookies
    assert client.get(link).status_code == 410


def test_opening_the_link_never_signs_in(client: TestClient, forum: Engine, clock: Clock) -> None:
    link = link_for(forum, "kuznetsov", clock.now)
    for _ in range(3):  # a mail scanner, a preview, the person
        page = client.get(link)
        assert page.status_code == 200 and "Continue as Николай Кузнецов" in page.text
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/").status_code == 303
    with session_scope(forum) as s:
        assert s.exec(select(SignInToken)).one().used_at is None
        assert s.exec(select(WebSession)).all() == []
    assert follow_link(client, link).status_code == 303  # still good for the person


def test_rate_limits_are_shared_by_app_processes(
    forum: Engine, web_runtime: Runtime, clock: Clock,
) -> None:
    settings = web_runtime.settings.model_copy(update={"sign_in_per_address": 3, "sign_in_per_client": 5})
    rt = Runtime(settings, web_runtime.definition, web_runtime.lifecycle, forum)
    one, two = (TestClient(create_app(runtime=rt, clock=clock), base_url=BASE, follow_redirects=False) for _ in range(2))
    codes = [ask_link(c, "a.petrov@example.org").status_code for c in (one, two, one, two)]
    assert codes == [303, 303, 303, 429]  # the fourth for this address, whichever process answers
    refused = ask_link(one, "a.petrov@example.org")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0 and "Too many" in refused.text
    assert len(messages(forum)) == 3
    # An unknown address counts the same (the limit tells nothing about membership) ...
    assert [ask_link(two, "nobody@example.org").status_code for _ in range(4)][-1] == 429
    # ... and per client: this test client has asked 5 times already in this hour.
    assert ask_link(one, "kuznetsov@example.org").status_code == 429
    clock.advance(hours=1)
    assert ask_link(two, "a.petrov@example.org").status_code == 303


@pytest.mark.parametrize(("base", "secure"), [(BASE, False), ("https://forum.example.org", True)])
def test_session_cookie_flags(forum: Engine, web_runtime: Runtime, clock: Clock, base: str, secure: bool) -> None:
    settings = web_runtime.settings.model_copy(update={"base_url": base})
    app = create_app(runtime=Runtime(settings, web_runtime.definition, web_runtime.lifecycle, forum), clock=clock)
    # Behind a proxy that ends TLS the app sees http while browsers use https (and send Secure cookies).
    client = TestClient(app, base_url=BASE, follow_redirects=False)
    page = client.get(link_for(forum, "kuznetsov", clock.now))
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token
    anonymous = page.cookies[CSRF_COOKIE]
    response = client.post(
        "/sign-in/continue", data={"token": token.group(1), "next": "/", "csrf_token": anonymous},
        headers={"Cookie": f"{CSRF_COOKIE}={anonymous}"},
    )
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert "httponly" in attributes and attributes["samesite"].lower() == "samesite=lax"
    assert attributes["max-age"] == f"Max-Age={12 * 3600}" and attributes["path"] == "Path=/"
    assert ("secure" in attributes) is secure
    raw = cookie.split(";")[0].split("=", 1)[1]
    with session_scope(forum) as s:
        stored = s.exec(select(WebSession)).one()
        assert stored.id_hash == secret_hash(raw) and stored.member == "kuznetsov"  # only the hash is stored


def test_https_request_gets_a_secure_cookie(app: object, forum: Engine, clock: Clock) -> None:
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)  # type: ignore[arg-type]
    response = follow_link(client, link_for(forum, "kuznetsov", clock.now).replace(BASE, "https://testserver"))
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    assert "secure" in cookie.lower()


def test_session_ends_after_12_hours(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "kuznetsov", clock.now)
    clock.advance(hours=11, minutes=59)
    assert client.get("/").status_code == 200
    clock.advance(minutes=1)
    r = client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"


def test_session_id_changes_at_sign_in(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "kuznetsov", clock.now)
    first = client.cookies[SESSION_COOKIE]
    sign_in(client, forum, "zhao.lei", clock.now)
    second = client.cookies[SESSION_COOKIE]
    assert first != second
    with session_scope(forum) as s:
        old = s.get(WebSession, secret_hash(first))
        assert old is not None and old.ended_at == clock.now  # the replaced session is over
    stale = TestClient(client.app, base_url=BASE, follow_redirects=False, cookies={SESSION_COOKIE: first})
    assert stale.get("/").status_code == 303


def test_sign_out_ends_the_session(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "kuznetsov", clock.now)
    raw = client.cookies[SESSION_COOKIE]
    home = client.get("/")
    r = client.post("/sign-out", data={"csrf_token": csrf_of(home.text)})
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"
    assert SESSION_COOKIE not in client.cookies
    replay = TestClient(client.app, base_url=BASE, follow_redirects=False, cookies={SESSION_COOKIE: raw})
    assert replay.get("/").status_code == 303  # the old cookie is worthless now
    assert replay.get("/api/v1/me/actions").status_code == 401


def test_deactivated_member_loses_their_session(client: TestClient, forum: Engine, clock: Clock, definition: object) -> None:
    sign_in(client, forum, "kuznetsov", clock.now)
    other = sign_in(TestClient(client.app, base_url=BASE, follow_redirects=False), forum, "sharma.anil", clock.now)
    assert other.get("/").status_code == 200
    unused = link_for(forum, "sharma.anil", clock.now)
    gone = definition.model_copy(  # type: ignore[attr-defined]
        update={"members": [m for m in definition.members if m.handle != "sharma.anil"]}  # type: ignore[attr-defined]
    )
    with session_scope(forum) as s:
        sync_definition(s, gone)  # the definition no longer names sharma.anil: deactivated
    assert other.get("/").status_code == 303
    assert other.get("/api/v1/me/actions").status_code == 401
    with session_scope(forum) as s:  # the sync ended the sessions and dropped the unused links
        assert s.exec(select(WebSession).where(WebSession.member == "sharma.anil")).all() == []
        assert s.exec(select(SignInToken).where(SignInToken.member == "sharma.anil")).all() == []
    assert client.get("/").status_code == 200  # others stay signed in
    assert client.get(unused).status_code == 410  # and a link issued before is no good either


def test_signed_in_member_is_sent_back_to_the_page_they_wanted(client: TestClient, forum: Engine, clock: Clock) -> None:
    r = client.get("/?x=1")
    assert r.status_code == 303 and r.headers["location"] == "/sign-in?next=%2F%3Fx%3D1"
    response = follow_link(client, link_for(forum, "kuznetsov", clock.now, next_path="/?x=1"))
    assert response.headers["location"] == "/?x=1"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"])
def test_next_never_leaves_the_app(client: TestClient, forum: Engine, clock: Clock, target: str) -> None:
    response = follow_link(client, link_for(forum, "kuznetsov", clock.now, next_path=target))
    assert response.headers["location"] == "/"


def test_a_second_tab_continuing_the_same_sign_in_leads_on(client: TestClient, forum: Engine, clock: Clock) -> None:
    # Two tabs of one browser hold "Continue as ..." pages (the link opened twice); the first one signs in.
    first = client.get(link_for(forum, "kuznetsov", clock.now, next_path="/forum")).text
    second = client.get(link_for(forum, "kuznetsov", clock.now, next_path="/forum")).text
    form = {"next": "/forum", "csrf_token": csrf_of(first)}
    token = re.compile(r'name="token" value="([^"]+)"')
    r = client.post("/sign-in/continue", data=form | {"token": token.search(first).group(1)})  # type: ignore[union-attr]
    assert r.status_code == 303 and r.headers["location"] == "/forum"
    session = client.cookies[SESSION_COOKIE]
    # The second tab's form carries the token of before the sign-in: it leads on, in the same session.
    again = {"next": "/forum", "csrf_token": csrf_of(second), "token": token.search(second).group(1)}  # type: ignore[union-attr]
    r = client.post("/sign-in/continue", data=again)
    assert r.status_code == 303 and r.headers["location"] == "/forum" and client.cookies[SESSION_COOKIE] == session


def test_signing_out_of_a_session_that_ended_meanwhile_leads_to_sign_in(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "kuznetsov", clock.now)
    token = csrf_of(client.get("/").text)
    clock.advance(hours=13)
    r = client.post("/sign-out", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"
    # With a live session, a sign-out without its token is still refused (the session goes on).
    sign_in(client, forum, "kuznetsov", clock.now)
    r = client.post("/sign-out", data={"csrf_token": "forged"})
    assert r.status_code == 403 and client.get("/").status_code == 200
