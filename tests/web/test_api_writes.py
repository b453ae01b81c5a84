"""The API's writes: create, edit a draft, actions; If-Match (428/412) and races; sessions with CSRF; bad input."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from models import Lifecycle
from tests.factories import ONE_HEAD_PER_STATE, T0, load, make_proposal
from tests.web.api_support import API, act, assert_problem, bearer, etag, token_for
from tests.web.conftest import BASE, Clock, sign_in
from web.security import CSRF_HEADER


@pytest.fixture
def author(forum: Engine) -> dict[str, str]:
    """Bearer header of zhao.lei, member of the industry group."""
    return bearer(token_for(forum, "zhao.lei"))


@pytest.fixture
def chair(forum: Engine) -> dict[str, str]:
    """Bearer header of kuznetsov, the industry group's chair."""
    return bearer(token_for(forum, "kuznetsov"))


# ---------------------------------------------------------------------- create
def test_create(client: TestClient, forum: Engine, author: dict[str, str]) -> None:
    r = client.post(f"{API}/proposals", headers=author, json={"group": "industry", "title": "  Cold  chain ", "body": "Text\n"})
    assert r.status_code == 201, r.text
    body = r.json()
    pid = body["id"]
    assert r.headers["location"] == f"{API}/proposals/{pid}" and r.headers["etag"] == f'"{pid}-1"'
    assert (body["title"], body["author"], body["state"], body["body"], body["my_actions"]) == (
        "Cold chain", "zhao.lei", "drafted", "Text\n", ["submit", "withdraw", "edit"],
    )
    assert client.get(r.headers["location"], headers=author).json()["title"] == "Cold chain"
    assert load(forum, pid).created_at == T0


@pytest.mark.parametrize(
    ("payload", "status", "detail"),
    [
        ({"group": "trade", "title": "Not my group"}, 403,
         "You are not a member of the working group trade and may not propose there."),
        ({"group": "nowhere", "title": "x"}, 422, "There is no working group “nowhere”."),
        ({"group": "industry", "title": "   "}, 422, None),
        ({"group": "industry", "title": ""}, 422, None),
        ({"group": "industry", "title": "a\x00b"}, 422, None),
        ({"group": "industry", "title": "x", "body": "\x00"}, 422, None),
        ({"group": "industry", "title": "x" * 301}, 422, None),
        ({"group": "industry", "title": "x", "body": "y" * 200_001}, 422, None),
        ({"group": "industry", "title": 5}, 422, None),
        ({"group": ["industry"], "title": "x"}, 422, None),
        ({"group": "industry"}, 422, None),
        ({"group": "industry", "title": "x", "author": "kuznetsov"}, 422, None),  # the caller is the author
        ([], 422, None),
        ("a string", 422, None),
    ],
)
def test_create_refuses_bad_input(
    client: TestClient, forum: Engine, author: dict[str, str], payload: Any, status: int, detail: str | None,
) -> None:
    assert_problem(client.post(f"{API}/proposals", headers=author, json=payload), status, detail=detail)


def test_body_that_is_not_json(client: TestClient, forum: Engine, author: dict[str, str]) -> None:
    r = client.post(f"{API}/proposals", headers=author | {"Content-Type": "application/json"}, content=b"\xff{not json")
    assert r.status_code in (400, 422) and r.headers["content-type"] == "application/problem+json"


# ---------------------------------------------------------------------- If-Match
def test_writes_need_if_match(client: TestClient, forum: Engine, lifecycle: Lifecycle, author: dict[str, str]) -> None:
    pid = make_proposal(forum, lifecycle)
    url = f"{API}/proposals/{pid}/actions/submit"
    assert_problem(client.post(url, headers=author), 428, detail="send If-Match with the ETag")
    assert_problem(client.post(url, headers=author | {"If-Match": "*"}), 428, detail="If-Match: * matches any version")
    assert_problem(client.patch(f"{API}/proposals/{pid}", headers=author, json={"title": "New"}), 428)
    assert_problem(client.post(url, headers=author | {"If-Match": f'"{pid}-7"'}), 412, detail="If-Match names version 7")
    assert_problem(client.post(url, headers=author | {"If-Match": f'W/"{pid}-1"'}), 412)  # weak tags never match
    assert_problem(client.post(url, headers=author | {"If-Match": '"999-1"'}), 412)
    assert_problem(client.post(url, headers=author | {"If-Match": "garbage\x7f"}), 412)
    assert load(forum, pid).state == "drafted"  # nothing written
    ok = client.post(url, headers=author | {"If-Match": f'"x", "{pid}-1"'})
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == f'"{pid}-2"' and ok.json()["proposal"]["etag"] == f'"{pid}-2"'
    assert [(e["action"], e["to_state"]) for e in ok.json()["events"]] == [("submit", "in_review")]
    again = client.post(url, headers=author | {"If-Match": f'"{pid}-1"'})  # the ETag read before the submit
    assert_problem(again, 412, detail=f"proposal {pid} is at version 2")


def test_missing_proposal_is_404_before_if_match(client: TestClient, forum: Engine, author: dict[str, str]) -> None:
    assert_problem(client.post(f"{API}/proposals/4242/actions/submit", headers=author), 404)
    assert_problem(client.post(f"{API}/proposals/99999999999999999999/actions/submit", headers=author), 404)
    assert_problem(client.patch(f"{API}/proposals/4242", headers=author, json={"title": "x"}), 404)


def test_two_clients_with_the_same_etag(app: FastAPI, forum: Engine, lifecycle: Lifecycle, chair: dict[str, str]) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    first, second = (TestClient(app, base_url=BASE, raise_server_exceptions=False) for _ in range(2))
    tag = etag(first, pid, chair)
    assert etag(second, pid, chair) == tag
    ok = first.post(f"{API}/proposals/{pid}/actions/recommend", headers=chair | {"If-Match": tag})
    late = second.post(f"{API}/proposals/{pid}/actions/reject", headers=chair | {"If-Match": tag}, json={"comment": "No"})
    assert ok.status_code == 200 and ok.headers["etag"] == f'"{pid}-3"'
    assert_problem(late, 412)
    assert load(forum, pid).state == "reviewed"


def test_two_clients_at_the_same_moment(app: FastAPI, forum: Engine, lifecycle: Lifecycle, chair: dict[str, str]) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    tag = etag(TestClient(app, base_url=BASE), pid, chair)
    barrier = threading.Barrier(2, timeout=30)
    answers: dict[str, int] = {}

    def write(action: str, body: dict[str, str] | None) -> None:
        client = TestClient(app, base_url=BASE, raise_server_exceptions=False)
        barrier.wait()
        r = client.post(f"{API}/proposals/{pid}/actions/{action}", headers=chair | {"If-Match": tag}, json=body)
        answers[action] = r.status_code

    threads = [
        threading.Thread(target=write, args=("recommend", None)),
        threading.Thread(target=write, args=("reject", {"comment": "No"})),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(answers.values()) == [200, 412], answers
    winner = next(a for a, status in answers.items() if status == 200)
    p = load(forum, pid)
    assert p.state == {"recommend": "reviewed", "reject": "rejected"}[winner] and p.version == 3


# ---------------------------------------------------------------------- actions
def test_refusal_names_the_lifecycles_reason_and_the_allowed_actions(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, author: dict[str, str],
) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    refused = act(client, pid, "reject", author, comment="No")
    body = assert_problem(refused, 403)
    assert body["detail"] == (
        "Only the chair of the working group industry (kuznetsov) may take the action “reject” on this proposal."
    )
    assert [a["action"] for a in body["allowed_actions"]] == ["recommend", "return", "reject", "withdraw"]
    assert body["allowed_actions"][0]["actors"] == ["kuznetsov"] and body["my_actions"] == ["withdraw"]
    not_now = "“approve” is not possible while the proposal is “in_review”."
    body = assert_problem(act(client, pid, "approve", author), 409, detail=not_now)
    assert body["my_actions"] == ["withdraw"]
    assert_problem(act(client, pid, "consensus", author), 403, detail="Only the scheduled review takes the action “consensus”.")
    assert_problem(act(client, pid, "fly", author), 422, detail="There is no action “fly”.")
    assert_problem(act(client, pid, "edit", author), 422)
    assert load(forum, pid).version == 2


def test_comment_and_percent(client: TestClient, forum: Engine, lifecycle: Lifecycle, chair: dict[str, str]) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    assert_problem(act(client, pid, "return", chair), 422, detail="“return” needs a comment.")
    r = act(client, pid, "return", chair, comment="Add the budget")
    assert r.status_code == 200 and r.json()["events"][0]["comment"] == "Add the budget"
    running = make_proposal(forum, lifecycle, state="implementing")
    needs = "“report_progress” needs the progress: a whole number from 0 to 100."
    assert_problem(act(client, running, "report_progress", chair, comment="Site"), 422, detail=needs)
    assert_problem(act(client, running, "report_progress", chair, percent=101), 422)
    assert_problem(act(client, running, "report_progress", chair, percent="half"), 422)
    assert_problem(act(client, running, "complete", chair, percent=10), 422, detail="“complete” takes no progress percent.")
    assert_problem(act(client, running, "return", chair, comment="x\x00"), 422)
    assert_problem(act(client, running, "complete", chair, note="unknown field"), 422)
    r = act(client, running, "report_progress", chair, percent=40, comment="Site chosen")
    assert r.status_code == 200 and r.json()["proposal"]["percent"] == 40
    back = "Progress cannot go back from 40% to 30%."
    assert_problem(act(client, running, "report_progress", chair, percent=30), 422, detail=back)


def test_endorsement_that_completes_consensus(client: TestClient, forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    for head in ONE_HEAD_PER_STATE[:-1]:
        assert act(client, pid, "endorse", bearer(token_for(forum, head))).status_code == 200
    last = act(client, pid, "endorse", bearer(token_for(forum, ONE_HEAD_PER_STATE[-1])))
    assert [e["action"] for e in last.json()["events"]] == ["endorse", "consensus"]
    assert last.json()["proposal"]["state"] == "endorsed" and last.headers["etag"] == f'"{pid}-{3 + 8 + 1}"'


# ---------------------------------------------------------------------- edit
def test_edit_a_draft(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, author: dict[str, str], chair: dict[str, str],
) -> None:
    pid = make_proposal(forum, lifecycle)
    url = f"{API}/proposals/{pid}"
    r = client.patch(url, headers=author | {"If-Match": f'"{pid}-1"'}, json={"body": "Budget\n"})
    assert r.status_code == 200 and r.headers["etag"] == f'"{pid}-2"'
    assert (r.json()["text_version"], r.json()["body"], r.json()["title"]) == (2, "Budget\n", "Joint agro-industrial park")
    same = client.patch(url, headers=author | {"If-Match": f'"{pid}-2"'}, json={"body": "Budget\n"})
    assert same.status_code == 200 and same.headers["etag"] == f'"{pid}-2"'  # nothing changed, nothing written
    refused = client.patch(url, headers=chair | {"If-Match": f'"{pid}-2"'}, json={"title": "Mine"})
    assert_problem(refused, 403, detail="Only the author (zhao.lei) may edit the text of this proposal.")
    for bad in ({}, {"title": None}, {"title": " "}, {"body": "\x00"}, {"colour": "red"}, {"title": 3}):
        assert_problem(client.patch(url, headers=author | {"If-Match": f'"{pid}-2"'}, json=bad), 422)
    act(client, pid, "submit", author)
    not_draft = client.patch(url, headers=author | {"If-Match": f'"{pid}-3"'}, json={"title": "Later"})
    assert_problem(not_draft, 409, detail="Only a draft can be edited; this proposal is “in_review”.")
    assert load(forum, pid).text_version == 2


# ---------------------------------------------------------------------- sessions and CSRF
def test_a_browser_session_writes_with_its_csrf_token(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock,
) -> None:
    pid = make_proposal(forum, lifecycle)
    sign_in(client, forum, "zhao.lei", clock.now)
    tag = client.get(f"{API}/proposals/{pid}").headers["etag"]
    url = f"{API}/proposals/{pid}/actions/submit"
    assert_problem(client.post(url, headers={"If-Match": tag}), 403, detail="CSRF")
    assert_problem(client.post(url, headers={"If-Match": tag, CSRF_HEADER: "forged"}), 403, detail="CSRF")
    token = client.get("/").text.split('"X-CSRF-Token": "')[1].split('"')[0]
    cross = client.post(url, headers={"If-Match": tag, CSRF_HEADER: token, "Origin": "https://evil.example"})
    assert_problem(cross, 403, detail="another site")
    assert load(forum, pid).state == "drafted"
    ok = client.post(url, headers={"If-Match": tag, CSRF_HEADER: token})
    assert ok.status_code == 200 and load(forum, pid).state == "in_review"
    created = client.post(f"{API}/proposals", headers={CSRF_HEADER: token}, json={"group": "industry", "title": "By browser"})
    assert created.status_code == 201


def test_no_session_and_no_token_is_401_for_writes(client: TestClient, forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle)
    assert_problem(client.post(f"{API}/proposals/{pid}/actions/submit", headers={"If-Match": f'"{pid}-1"'}), 401)
    assert_problem(client.post(f"{API}/proposals", json={"group": "industry", "title": "x"}), 401)
    assert_problem(client.patch(f"{API}/proposals/{pid}", json={"title": "x"}), 401)
