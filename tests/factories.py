"""Factories: build proposals and drive them to a given state through the lifecycle."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.engine import Engine

from models import Lifecycle, session_scope
from models.tables import Proposal, ProposalCreate

# During RU-CHE's presiding term (2020-10-29 .. 2022-12-31).
T0 = dt.datetime(2021, 3, 1, 9, 0, tzinfo=dt.UTC)
# One head of region per member state: together they make consensus.
ONE_HEAD_PER_STATE = ["wang.jianguo", "deshmukh", "seitkazieva", "toktogulov", "khan.ayesha", "petrov", "rakhimov", "karimov"]
# Default proposal: industry group, chaired by kuznetsov, authored by zhao.lei; RU-CHE head is petrov.
GROUP, AUTHOR, CHAIR, PRESIDING_HEAD = "industry", "zhao.lei", "kuznetsov", "petrov"

PATH = {
    "drafted": [],
    "in_review": [("submit", AUTHOR)],
    "reviewed": [("submit", AUTHOR), ("recommend", CHAIR)],
    "endorsed": [("submit", AUTHOR), ("recommend", CHAIR), *[("endorse", h) for h in ONE_HEAD_PER_STATE]],
    "implementing": [
        ("submit", AUTHOR), ("recommend", CHAIR), *[("endorse", h) for h in ONE_HEAD_PER_STATE], ("approve", PRESIDING_HEAD),
    ],
}


def make_proposal(
    engine: Engine, lifecycle: Lifecycle, *, state: str = "drafted", now: dt.datetime = T0,
    group: str = GROUP, author: str = AUTHOR, title: str = "Joint agro-industrial park",
) -> int:
    """Create a proposal and take it to ``state`` along the happy path; returns its id."""
    with session_scope(engine) as s:
        p = lifecycle.create_proposal(session=s, proposal_in=ProposalCreate(group=group, author=author, title=title), now=now)
        assert p.id is not None
        pid = p.id
    for action, actor in PATH[state]:
        with session_scope(engine) as s:
            lifecycle.apply(s, pid, action, actor, now=now)
    return pid


def create_with_text(
    engine: Engine, lifecycle: Lifecycle, title: str, *, summary: str = "", body: str = "",
    group: str = GROUP, author: str = AUTHOR, submit: bool = False, now: dt.datetime = T0,
) -> int:
    """A proposal with this text (submitted to its group when ``submit``); returns its id."""
    from models.texts import proposal_create

    with session_scope(engine) as s:
        data = proposal_create(group=group, author=author, title=title, summary=summary, body=body)
        p = lifecycle.create_proposal(session=s, proposal_in=data, now=now)
        assert p.id is not None
        pid = p.id
    if submit:
        with session_scope(engine) as s:
            lifecycle.apply(s, pid, "submit", author, now=now)
    return pid


def load(engine: Engine, pid: int) -> Proposal:
    """A fresh copy of the proposal row."""
    with session_scope(engine) as s:
        p = s.get(Proposal, pid)
        assert p is not None
        return p
