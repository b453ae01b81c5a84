"""Personal API tokens on the profile page and as Bearer: shown once, stored hashed, revoked, ended with the member."""

from __future__ import annotations

import datetime as dt
import re

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import select

from config import ForumDefinition
from models import session_scope, sync_definition
from models.auth import secret_hash
from models.roster import bump
from models.tables import Member
from models.tokens import ApiToken
from tests.web.api_support import API, assert_problem, bearer, token_for
from tests.web.conftest import BASE, Clock, csrf_of, sign_in


def _create_on_profile(client: TestClient, name: str) -> tuple[str, str]:
    """Create a token on the profile page; the page's HTML and the token shown."""
    page = client.get("/profile")
    r = client.post("/profile/tokens", data={"name": name, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 200, r.text
    shown = re.search(r'id="token-value" type="text" readonly value="([^"]+)"', r.text)
    assert shown, "the new token is not shown"
    return r.text, shown.group(1)


def test_profile_shows_the_member(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "kuznetsov", clock.now)
    page = client.get("/profile")
    assert page.status_code == 200
    for text in ("Николай Кузнецов", "n.kuznetsov@example.org", "Русский", "Asia/Yekaterinburg", "API-токены"):
        assert text in page.text
    assert "У вас нет API-токенов." in page.text
    client.cookies.set("forumflow_lang", "zh")
    assert "API 令牌" in client.get("/profile").text


def test_profile_needs_a_member(client: TestClient) -> None:
    r = client.get("/profile")
    assert r.status_code == 303 and r.headers["location"] == "/sign-in?next=%2Fprofile"


def test_token_from_the_profile_is_shown_once_and_works(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "kuznetsov", clock.now)
    html, raw = _create_on_profile(client, "Reporting <script>")
    assert raw.startswith("ffp_") and len(raw) > 40
    assert "Reporting &lt;script&gt;" in html and "<script>" not in html.split("<main")[1]
    with session_scope(forum) as s:
        row = s.exec(select(ApiToken)).one()
        assert row.token_hash == secret_hash(raw) and raw not in row.token_hash  # only the hash is kept
        assert (row.member, row.name, row.created_at, row.last_used_at) == ("kuznetsov", "Reporting <script>", clock.now, None)
    again = client.get("/profile").text
    assert raw not in again and "Reporting &lt;script&gt;" in again  # listed, never shown again
    clock.advance(hours=1)
    api = TestClient(client.app, base_url=BASE)  # a script: no cookies at all
    r = api.get(f"{API}/me/actions", headers=bearer(raw))
    assert r.status_code == 200 and r.json()["member"] == "kuznetsov"
    with session_scope(forum) as s:
        assert s.exec(select(ApiToken)).one().last_used_at == clock.now
    assert "Последнее использование" in client.get("/profile").text


def test_last_use_is_written_at_most_once_a_minute(client: TestClient, forum: Engine, clock: Clock) -> None:
    raw = token_for(forum, "kuznetsov", clock.now)
    client.get(f"{API}/forum", headers=bearer(raw))
    first = clock.now
    clock.advance(seconds=30)
    client.get(f"{API}/forum", headers=bearer(raw))
    with session_scope(forum) as s:
        assert s.exec(select(ApiToken.last_used_at)).one() == first
    clock.advance(seconds=31)
    client.get(f"{API}/forum", headers=bearer(raw))
    with session_scope(forum) as s:
        assert s.exec(select(ApiToken.last_used_at)).one() == clock.now


def test_bad_names_are_refused_on_the_page(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "zhao.lei", clock.now)
    token = csrf_of(client.get("/profile").text)
    for name in ("", "   ", "x" * 101, "a\x01b"):
        r = client.post("/profile/tokens", data={"name": name, "csrf_token": token})
        assert r.status_code == 422 and 'aria-invalid="true"' in r.text and "token-value" not in r.text
    with session_scope(forum) as s:
        assert s.exec(select(ApiToken)).all() == []


def test_creating_needs_the_csrf_token(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "zhao.lei", clock.now)
    assert client.post("/profile/tokens", data={"name": "x"}).status_code == 403
    with session_scope(forum) as s:
        assert s.exec(select(ApiToken)).all() == []


def test_revoked_token_is_refused(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "kuznetsov", clock.now)
    _, raw = _create_on_profile(client, "old script")
    _, kept = _create_on_profile(client, "new script")
    assert client.get(f"{API}/forum", headers=bearer(raw)).status_code == 200
    page = client.get("/profile").text
    with session_scope(forum) as s:
        token_id = s.exec(select(ApiToken.id).where(ApiToken.name == "old script")).one()
    r = client.post(f"/profile/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(page)})
    assert r.status_code == 303 and r.headers["location"] == "/profile"
    assert_problem(client.get(f"{API}/forum", headers=bearer(raw)), 401, detail="not valid")
    assert client.get(f"{API}/forum", headers=bearer(kept)).status_code == 200
    listed = client.get("/profile").text
    assert "old script" not in listed and "new script" in listed


def test_nobody_revokes_anothers_token(client: TestClient, forum: Engine, clock: Clock) -> None:
    theirs = token_for(forum, "petrov", clock.now)
    with session_scope(forum) as s:
        token_id = s.exec(select(ApiToken.id)).one()
    sign_in(client, forum, "kuznetsov", clock.now)
    page = client.get("/profile").text
    r = client.post(f"/profile/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(page)})
    assert r.status_code == 404
    assert client.post("/profile/tokens/99999999999999999999/revoke", data={"csrf_token": csrf_of(page)}).status_code == 404
    assert client.get(f"{API}/forum", headers=bearer(theirs)).status_code == 200


def test_a_deactivated_members_tokens_stop_working(
    client: TestClient, forum: Engine, clock: Clock, definition: ForumDefinition,
) -> None:
    raw, other = token_for(forum, "sharma.anil"), token_for(forum, "kuznetsov")
    assert client.get(f"{API}/forum", headers=bearer(raw)).status_code == 200
    with session_scope(forum) as s:  # deactivated (e.g. by hand): refused at once
        member = s.get(Member, "sharma.anil")
        assert member is not None
        member.active = False
        s.add(member)
        bump(s)
    assert_problem(client.get(f"{API}/forum", headers=bearer(raw)), 401)
    gone = definition.model_copy(update={"members": [m for m in definition.members if m.handle != "sharma.anil"]})
    with session_scope(forum) as s:
        sync_definition(s, gone)  # the definition no longer names them: their tokens are deleted
    with session_scope(forum) as s:
        assert [t.member for t in s.exec(select(ApiToken))] == ["kuznetsov"]
    with session_scope(forum) as s:
        sync_definition(s, definition)  # back in the forum: the old token stays dead
    assert_problem(client.get(f"{API}/forum", headers=bearer(raw)), 401)
    assert client.get(f"{API}/forum", headers=bearer(other)).status_code == 200


def test_the_authorization_header_decides_alone(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "kuznetsov", clock.now)
    assert client.get(f"{API}/me/actions").status_code == 200  # the session alone
    for header in ("Bearer nonsense", "Bearer ffp_" + "a" * 43, "Bearer", "Basic a3V6bmV0c292Og==", "bearer  ", "ffp_x"):
        assert_problem(client.get(f"{API}/me/actions", headers={"Authorization": header}), 401)
    raw = token_for(forum, "petrov", clock.now)
    assert client.get(f"{API}/me/actions", headers={"Authorization": f"bearer {raw}"}).json()["member"] == "petrov"


def test_bearer_writes_need_no_csrf_token(client: TestClient, forum: Engine, clock: Clock) -> None:
    raw = token_for(forum, "zhao.lei", clock.now)
    r = client.post(f"{API}/proposals", headers=bearer(raw) | {"Origin": "https://elsewhere.example"},
                    json={"group": "industry", "title": "From a script"})
    assert r.status_code == 201 and r.json()["author"] == "zhao.lei"


def test_token_stays_valid_across_days(client: TestClient, forum: Engine, clock: Clock) -> None:
    raw = token_for(forum, "zhao.lei", clock.now)
    clock.now += dt.timedelta(days=400)
    assert client.get(f"{API}/me/actions", headers=bearer(raw)).status_code == 200
