"""My actions (page and API): the lifecycle's answer of who must act, deadlines, marks, order, empty state."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from models import Lifecycle, session_scope
from notifications.render import format_when
from tests.factories import T0, make_proposal
from tests.web.conftest import Clock, sign_in
from web.i18n import LANG_COOKIE

DAY = dt.timedelta(days=1)


def forum_year(engine: Engine, lifecycle: Lifecycle) -> dict[str, int]:
    """Proposals in several states and urgencies around T0; ids by name."""
    ids = {
        "overdue": make_proposal(engine, lifecycle, state="in_review", now=T0 - 31 * DAY, title="Overdue review"),
        "soon": make_proposal(engine, lifecycle, state="in_review", now=T0 - 29 * DAY, title="Review closing soon"),
        "calm": make_proposal(engine, lifecycle, state="in_review", now=T0, title="Fresh review"),
        "progress": make_proposal(engine, lifecycle, state="implementing", now=T0 - 80 * DAY, title="Agro park"),
        "draft": make_proposal(engine, lifecycle, author="kuznetsov", title="Kuznetsov's own draft"),
        "other_group": make_proposal(engine, lifecycle, group="trade", author="chen.jing", title="Trade matter"),
        "round": make_proposal(engine, lifecycle, state="reviewed", now=T0 - DAY, title="In the round"),
        "approval": make_proposal(engine, lifecycle, state="endorsed", now=T0 - 13 * DAY, title="Awaiting approval"),
    }
    with session_scope(engine) as s:
        lifecycle.apply(s, ids["other_group"], "submit", "chen.jing", now=T0)  # waits on the trade group's chair
    return ids


def api_items(client: TestClient) -> list[dict[str, object]]:
    """The signed-in member's items from the API."""
    r = client.get("/api/v1/me/actions")
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


def test_chair_sees_what_waits_on_them_by_deadline(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock
) -> None:
    ids = forum_year(forum, lifecycle)
    sign_in(client, forum, "kuznetsov", clock.now)
    items = api_items(client)
    order = ["overdue", "soon", "progress", "calm", "draft"]
    assert [i["proposal_id"] for i in items] == [ids[n] for n in order]
    by = {name: items[k] for k, name in enumerate(order)}
    assert (by["overdue"]["overdue"], by["overdue"]["closing_soon"]) == (True, False)
    assert (by["soon"]["overdue"], by["soon"]["closing_soon"]) == (False, True)  # 1 day left: past the 2-day reminder
    assert (by["calm"]["overdue"], by["calm"]["closing_soon"]) == (False, False)
    assert by["calm"]["deadline"] == (T0 + 30 * DAY).isoformat().replace("+00:00", "Z")
    assert by["progress"]["deadline"] == (T0 + 10 * DAY).isoformat().replace("+00:00", "Z")  # the next progress report
    assert by["draft"]["deadline"] is None
    assert (by["progress"]["deadline_of"], by["calm"]["deadline_of"]) == ("progress_report", "state")
    assert [a["action"] for a in by["calm"]["actions"]] == ["recommend", "return", "reject"]  # type: ignore[union-attr]
    assert [a["action"] for a in by["progress"]["actions"]] == ["report_progress", "complete"]  # type: ignore[union-attr]
    assert [a["action"] for a in by["draft"]["actions"]] == ["submit", "withdraw", "edit"]  # type: ignore[union-attr]
    assert by["calm"]["url"] == f"http://testserver/proposals/{ids['calm']}"

    page = client.get("/").text
    shown = [int(n) for n in re.findall(r'<a href="/proposals/(\d+)">', page)]
    assert shown == [ids[n] for n in order]
    cards = page.split('<li class="item')[1:]
    assert "Просрочено" in cards[0] and "is-overdue" in cards[0]
    assert "Срок истекает" in cards[1] and "is-soon" in cards[1]
    assert "Просрочено" not in cards[3] and "Срок истекает" not in cards[3]
    when = format_when(T0 + 30 * DAY, "ru", ZoneInfo("Asia/Yekaterinburg"))
    assert when in cards[3] and "14:00" in when and "Екатеринбург" in when  # his zone, named
    assert "Рекомендация к одобрению" in cards[3] and "Без срока" in cards[4]
    assert "Отчёт о ходе реализации ожидается:" in cards[2] and "Срок:" not in cards[2]


def test_overdue_means_the_same_on_every_page(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    # Reviews whose 30-day deadline is exactly now (not overdue yet) and a minute ago (overdue), and a measure whose
    # progress report is late: the last is "report overdue", never "overdue", which the lists' filter does not show.
    on_time = make_proposal(forum, lifecycle, state="in_review", now=T0 - 30 * DAY, title="Due this very minute")
    late = make_proposal(forum, lifecycle, state="in_review", now=T0 - 30 * DAY - dt.timedelta(minutes=1), title="Late")
    measure = make_proposal(forum, lifecycle, state="implementing", now=T0 - 100 * DAY, title="Measure")
    sign_in(client, forum, "kuznetsov", clock.now)
    client.cookies.set(LANG_COOKIE, "en")
    items = {i["proposal_id"]: i for i in api_items(client)}
    assert (items[on_time]["overdue"], items[late]["overdue"], items[measure]["overdue"]) == (False, True, True)
    assert items[measure]["deadline_of"] == "progress_report"
    listed = [int(n) for n in re.findall(r'<a href="/proposals/(\d+)">', client.get("/proposals?overdue=1").text)]
    assert listed == [late]
    cards = {int(re.search(r'href="/proposals/(\d+)"', c).group(1)): c for c in client.get("/").text.split('<li class="item')[1:]}  # type: ignore[union-attr]
    assert ">Overdue<" in cards[late] and "Overdue" not in cards[on_time]
    assert ">Report overdue<" in cards[measure] and ">Overdue<" not in cards[measure]
    assert "mark-overdue" not in client.get(f"/proposals/{on_time}").text
    assert "mark-overdue" in client.get(f"/proposals/{late}").text


def test_heads_of_a_state_that_endorsed_have_nothing_left(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock
) -> None:
    ids = forum_year(forum, lifecycle)
    sign_in(client, forum, "sokolova", clock.now)  # RU-SVE: the same member state as petrov (RU-CHE)
    assert [i["proposal_id"] for i in api_items(client)] == [ids["round"]]
    with session_scope(forum) as s:
        lifecycle.apply(s, ids["round"], "endorse", "petrov", now=clock.now)
    assert api_items(client) == []  # Russia has endorsed: the lifecycle no longer waits on her
    page = client.get("/").text
    assert "Ничто не ждёт вашего действия" in page and "/proposals/" not in page


def test_presiding_head_sees_the_approval(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    ids = forum_year(forum, lifecycle)
    sign_in(client, forum, "petrov", clock.now)
    items = {i["proposal_id"]: i for i in api_items(client)}
    assert set(items) == {ids["round"], ids["approval"]}
    approval = items[ids["approval"]]
    assert [a["action"] for a in approval["actions"]] == ["approve", "refer_back"]  # type: ignore[union-attr]
    assert approval["closing_soon"] is True  # one day left of 14: past the last reminder (1 day)
    assert [i["proposal_id"] for i in api_items(client)] == [ids["approval"], ids["round"]]


def test_empty_state(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "deshmukh", clock.now)
    page = client.get("/")
    assert page.status_code == 200 and "Nothing is waiting for you" in page.text and '<ol class="items">' not in page.text
    assert client.get("/api/v1/me/actions").json() == {"member": "deshmukh", "items": []}


def test_api_needs_a_signed_in_member(client: TestClient) -> None:
    r = client.get("/api/v1/me/actions")
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json() == {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": "sign in first"}


def test_page_needs_a_signed_in_member(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"
    htmx = client.get("/", headers={"HX-Request": "true"})
    assert htmx.status_code == 204 and htmx.headers["hx-redirect"] == "/sign-in"
