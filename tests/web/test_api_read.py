"""The API's read side: list and search with paging, a proposal with its ETag, events, texts, diffs, the forum."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from models import Lifecycle, session_scope
from models.texts import text_edit
from tests.factories import T0, make_proposal
from tests.web.api_support import API, assert_problem, bearer, some_proposals, token_for
from tests.web.conftest import Clock

DAY = dt.timedelta(days=1)


@pytest.fixture
def auth(forum: Engine) -> dict[str, str]:
    """Bearer header of the industry group's chair."""
    return bearer(token_for(forum, "kuznetsov"))


def ids_of(response: object) -> list[int]:
    """The ids of a list answer."""
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    return [item["id"] for item in response.json()["items"]]  # type: ignore[attr-defined]


def test_list_filters(client: TestClient, forum: Engine, lifecycle: Lifecycle, auth: dict[str, str]) -> None:
    ids = some_proposals(forum, lifecycle)
    late = make_proposal(forum, lifecycle, state="in_review", now=T0 - 31 * DAY, title="Late review")
    trade = make_proposal(forum, lifecycle, group="trade", author="chen.jing", title="Парк «Дружба» в Челябинске")
    assert ids_of(client.get(f"{API}/proposals", headers=auth)) == sorted([*ids.values(), late, trade])
    assert ids_of(client.get(f"{API}/proposals?state=in_review", headers=auth)) == [ids["in_review"], late]
    assert ids_of(client.get(f"{API}/proposals?group=trade", headers=auth)) == [trade]
    assert ids_of(client.get(f"{API}/proposals?overdue=true", headers=auth)) == [late]
    assert ids_of(client.get(f"{API}/proposals?overdue=true&state=drafted", headers=auth)) == []
    # Text search: any case, in every script, and ids.
    assert ids_of(client.get(f"{API}/proposals", params={"q": "ДРУЖБА"}, headers=auth)) == [trade]
    assert ids_of(client.get(f"{API}/proposals", params={"q": "late REVIEW"}, headers=auth)) == [late]
    assert ids_of(client.get(f"{API}/proposals", params={"q": "agro park (end"}, headers=auth)) == [ids["endorsed"]]
    assert ids_of(client.get(f"{API}/proposals", params={"q": f"#{trade}"}, headers=auth)) == [trade]
    assert ids_of(client.get(f"{API}/proposals", params={"q": "100%"}, headers=auth)) == []  # % is a character, not a wildcard
    assert ids_of(client.get(f"{API}/proposals", params={"q": "agro", "group": "trade"}, headers=auth)) == []
    # Each word anywhere, in any order (as on the pages and the command line), not the words as one phrase.
    assert ids_of(client.get(f"{API}/proposals", params={"q": "REVIEW late"}, headers=auth)) == [late]
    assert ids_of(client.get(f"{API}/proposals", params={"q": str(trade)}, headers=auth)) == [trade]
    item = client.get(f"{API}/proposals?state=in_review", headers=auth).json()["items"][1]
    assert item["overdue"] is True and item["etag"] == f'"{late}-{item["version"]}"'
    assert item["url"] == f"http://testserver/proposals/{late}"


def test_text_search_looks_in_summary_and_body(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, auth: dict[str, str],
) -> None:
    pid = make_proposal(forum, lifecycle)
    other = make_proposal(forum, lifecycle, title="Other")
    with session_scope(forum) as s:
        lifecycle.edit(s, pid, "zhao.lei", text_edit(summary="Cold-chain logistics", body="Warehouses in 齐齐哈尔"), now=T0)
    assert ids_of(client.get(f"{API}/proposals", params={"q": "COLD-CHAIN"}, headers=auth)) == [pid]
    assert ids_of(client.get(f"{API}/proposals", params={"q": "齐齐哈尔"}, headers=auth)) == [pid]
    assert other not in ids_of(client.get(f"{API}/proposals", params={"q": "warehouses"}, headers=auth))


def test_paging(client: TestClient, forum: Engine, lifecycle: Lifecycle, auth: dict[str, str]) -> None:
    all_ids = [make_proposal(forum, lifecycle, title=f"Measure {n}") for n in range(7)]
    first = client.get(f"{API}/proposals?limit=3", headers=auth).json()
    assert [i["id"] for i in first["items"]] == all_ids[:3]
    assert (first["total"], first["limit"], first["offset"], first["next_offset"]) == (7, 3, 0, 3)
    assert ids_of(client.get(f"{API}/proposals?limit=3&offset=3", headers=auth)) == all_ids[3:6]
    last = client.get(f"{API}/proposals?limit=3&page=3", headers=auth).json()
    assert [i["id"] for i in last["items"]] == all_ids[6:] and last["offset"] == 6 and last["next_offset"] is None
    assert ids_of(client.get(f"{API}/proposals?limit=3&page=9", headers=auth)) == []


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("state=nonsense", "There is no state “nonsense”."),
        ("group=nonsense", "There is no working group “nonsense”."),
        ("limit=0", None),
        ("limit=101", None),
        ("offset=-1", None),
        ("offset=99999999999999999999999", None),
        ("page=0", None),
        ("overdue=maybe", None),
        ("q=a%00b", "NUL"),
        (f"q={'x' * 201}", None),
        ("q=" + "+".join(["word"] * 11), "Search for at most 10 words."),  # as the pages and the command line
        ("state=in_review%00", None),
    ],
)
def test_bad_filters_are_422(client: TestClient, forum: Engine, auth: dict[str, str], query: str, where: str | None) -> None:
    assert_problem(client.get(f"{API}/proposals?{query}", headers=auth), 422, detail=where)


def test_a_proposal_with_its_etag(client: TestClient, forum: Engine, lifecycle: Lifecycle, auth: dict[str, str]) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    r = client.get(f"{API}/proposals/{pid}", headers=auth)
    assert r.status_code == 200 and r.headers["etag"] == f'"{pid}-2"'
    body = r.json()
    assert (body["id"], body["state"], body["version"], body["etag"]) == (pid, "in_review", 2, f'"{pid}-2"')
    assert body["text"] == {"version": 1, "author": "zhao.lei", "at": "2021-03-01T09:00:00Z"}
    assert [a["action"] for a in body["allowed"]] == ["recommend", "return", "reject", "withdraw"]
    assert body["my_actions"] == ["recommend", "return", "reject"]  # the chair's
    assert body["deadline"] == "2021-03-31T09:00:00Z" and body["overdue"] is False


def test_if_none_match(client: TestClient, forum: Engine, lifecycle: Lifecycle, auth: dict[str, str]) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    tag = client.get(f"{API}/proposals/{pid}", headers=auth).headers["etag"]
    same = client.get(f"{API}/proposals/{pid}", headers=auth | {"If-None-Match": tag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == tag
    assert client.get(f"{API}/proposals/{pid}", headers=auth | {"If-None-Match": f'"x", {tag}'}).status_code == 304
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "recommend", "kuznetsov", now=T0)
    changed = client.get(f"{API}/proposals/{pid}", headers=auth | {"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] == f'"{pid}-3"' and changed.json()["state"] == "reviewed"


def test_events_texts_and_diff(client: TestClient, forum: Engine, lifecycle: Lifecycle, auth: dict[str, str]) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "return", "kuznetsov", comment="Add the budget", now=T0)
        lifecycle.edit(s, pid, "zhao.lei", text_edit(body="Budget: 2 million\n"), now=T0 + DAY)
    events = client.get(f"{API}/proposals/{pid}/events", headers=auth).json()
    assert [(e["seq"], e["action"], e["actor"]) for e in events] == [
        (1, "create", "zhao.lei"), (2, "submit", "zhao.lei"), (3, "return", "kuznetsov"), (4, "edit", "zhao.lei"),
    ]
    assert events[0]["from_state"] is None and events[2]["comment"] == "Add the budget"
    assert events[3]["payload"] == {"fields": ["body"], "text_version": 2} and events[3]["at"] == "2021-03-02T09:00:00Z"
    texts = client.get(f"{API}/proposals/{pid}/texts", headers=auth).json()
    assert [(t["version"], t["body"]) for t in texts] == [(1, ""), (2, "Budget: 2 million\n")]
    assert client.get(f"{API}/proposals/{pid}/texts/2", headers=auth).json()["body"] == "Budget: 2 million\n"
    diff = client.get(f"{API}/proposals/{pid}/diff", headers=auth).json()
    assert (diff["from"], diff["to"], diff["current"], diff["changed"]) == (1, 2, 2, ["body"])
    assert diff["fields"]["body"]["ops"] == [{"op": "insert", "new": "Budget: 2 million\n"}]
    assert "+Budget: 2 million" in diff["unified"]
    back = client.get(f"{API}/proposals/{pid}/diff?from=2&to=1", headers=auth).json()
    assert back["fields"]["body"]["ops"] == [{"op": "delete", "old": "Budget: 2 million\n"}]
    assert_problem(client.get(f"{API}/proposals/{pid}/diff?to=3", headers=auth), 404, detail="no text version 3")
    assert_problem(client.get(f"{API}/proposals/{pid}/texts/9", headers=auth), 404, detail="no text version 9")
    assert_problem(client.get(f"{API}/proposals/{pid}/diff?from=0", headers=auth), 422)


def test_the_forum(client: TestClient, forum: Engine, lifecycle: Lifecycle, auth: dict[str, str], clock: Clock) -> None:
    make_proposal(forum, lifecycle, state="in_review")
    body = client.get(f"{API}/forum", headers=auth).json()
    assert body["forum"] == "SCO Member States' Heads of Regions Forum" and "RU" in body["member_states"]
    assert body["presiding_region_now"] == "RU-CHE"
    assert [t["region"] for t in body["presiding_terms"] if t["current"]] == ["RU-CHE"]
    industry = next(g for g in body["working_groups"] if g["key"] == "industry")
    assert (industry["chair"], industry["deputy_chair"]) == ("kuznetsov", "nurlanova") and "zhao.lei" in industry["members"]
    assert next(r for r in body["regions"] if r["code"] == "RU-CHE")["head"] == "petrov"
    assert body["proposals"]["in_review"] == 1
    assert body["workflow"]["initial"] == "drafted"
    recommend = next(a for a in body["workflow"]["actions"] if a["name"] == "recommend")
    assert recommend == {
        "name": "recommend", "label": recommend["label"], "source": ["in_review"], "dest": "reviewed",
        "roles": ["group_chair"], "comment_required": False,
    }
    clock.now = dt.datetime(2023, 2, 1, tzinfo=dt.UTC)  # UZ-SA's term
    assert client.get(f"{API}/forum", headers=auth).json()["presiding_region_now"] == "UZ-SA"


@pytest.mark.parametrize(
    "path",
    [
        "/proposals/99999999999999999999999999", "/proposals/2147483648", "/proposals/9223372036854775808",
        "/proposals/-1", "/proposals/0", "/proposals/99999999999999999999999999/events",
        "/proposals/99999999999999999999999999/texts", "/proposals/99999999999999999999999999/diff",
    ],
)
def test_ids_no_proposal_can_have_are_404(client: TestClient, forum: Engine, auth: dict[str, str], path: str) -> None:
    assert_problem(client.get(API + path, headers=auth), 404, detail="not found")


@pytest.mark.parametrize(
    "path", ["/proposals/abc", "/proposals/1.5", "/proposals/%00", "/proposals/1%00", "/proposals/1/texts/abc",
             "/proposals/1/texts/99999999999999999999"],
)
def test_malformed_ids_are_422(client: TestClient, forum: Engine, auth: dict[str, str], path: str) -> None:
    assert_problem(client.get(API + path, headers=auth), 422)


@pytest.mark.parametrize(
    "path",
    ["/proposals", "/proposals/1", "/proposals/1/events", "/proposals/1/texts", "/proposals/1/diff", "/forum", "/me/actions"],
)
def test_every_read_needs_a_member(client: TestClient, forum: Engine, path: str) -> None:
    r = client.get(API + path)
    assert_problem(r, 401)
    assert r.headers["www-authenticate"] == 'Bearer realm="forumflow"'


def test_paths_the_mount_cannot_match_are_problems(client: TestClient) -> None:
    r = client.get(f"{API}/proposals/%0A/events")
    assert_problem(r, 404)
