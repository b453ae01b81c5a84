"""How many SQL statements the busiest requests take: the proposal page and an action through the API (issue 10).

Each statement costs more in Python (SQLAlchemy) than in the database; these budgets keep the count from creeping up.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from models import Lifecycle
from tests.factories import make_proposal
from tests.models.conftest import counted
from tests.web.api_support import API, bearer, etag, token_for
from tests.web.conftest import Clock, sign_in

HEADS = ["wang.jianguo", "deshmukh", "seitkazieva", "toktogulov", "khan.ayesha", "petrov", "rakhimov", "karimov"]
# The proposal page of a proposal in its endorsement round, for a head of region who has not decided: the session
# with its member; the proposal with the roster's generation and the current text's author; the board's decisions
# (the actions possible take the round's decisions from it); the timeline.
PAGE_BUDGET = 4
# An endorsement through the API with a Bearer token: the token (with the roster's generation: its member is the
# roster's); the lifecycle's read and its three writes; then the answer: the current text's author (the actions
# possible next are known from what the lifecycle read).
ACTION_BUDGET = 6


def test_the_proposal_page_in_a_round(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    sign_in(client, forum, "patel", clock.now)
    assert client.get(f"/proposals/{pid}").status_code == 200  # warms the roster
    with counted(forum) as seen:
        page = client.get(f"/proposals/{pid}")
    assert page.status_code == 200 and 'class="board"' in page.text
    assert len(seen) <= PAGE_BUDGET, seen
    assert all(q.lstrip().upper().startswith("SELECT") for q in seen), seen  # reading a page writes nothing


def test_an_endorsement_through_the_api(client: TestClient, forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    heads = {h: bearer(token_for(forum, h)) for h in HEADS[:3]}
    for h in heads.values():  # each token's first use of the minute is noted (one UPDATE): not counted here
        etag(client, pid, h)
    for head in HEADS[:3]:
        tag = etag(client, pid, heads[head])
        with counted(forum) as seen:
            r = client.post(f"{API}/proposals/{pid}/actions/endorse", headers=heads[head] | {"If-Match": tag})
        assert r.status_code == 200, r.text
        assert len(seen) <= ACTION_BUDGET, seen
        assert len([q for q in seen if not q.lstrip().upper().startswith("SELECT")]) == 3, seen  # decision, proposal, event


# A proposal read through the API with a Bearer token: the token (with the roster's generation); the proposal with its
# current text's author and the roster's generation; the round's decisions (for the actions possible).
READ_BUDGET = 3


def test_a_proposal_read_through_the_api(client: TestClient, forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    head = bearer(token_for(forum, HEADS[0]))
    etag(client, pid, head)  # the token's first use of the minute is noted (one UPDATE): not counted here
    with counted(forum) as seen:
        r = client.get(f"{API}/proposals/{pid}", headers=head)
    assert r.status_code == 200 and r.json()["text"]["version"] == 1, r.text
    assert any(HEADS[0] in a["actors"] for a in r.json()["allowed"])  # the head may endorse: the round's decisions read
    assert len(seen) <= READ_BUDGET, seen
    assert all(q.lstrip().upper().startswith("SELECT") for q in seen), seen
