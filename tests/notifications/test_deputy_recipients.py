"""Deputies hear of the steps they hold: the deputy chair when the chair wrote it, the term's deputy when a presiding head did."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.engine import Engine

from config.definition import ForumDefinition
from models import session_scope
from models.tables import Event, Proposal
from notifications.planning import Directory
from notifications.recipients import RecipientRules

IN_RU_CHE_TERM = dt.datetime(2022, 6, 1, 9, 0, tzinfo=dt.UTC)


def _heard(forum: Engine, definition: ForumDefinition, action: str, author: str) -> list[str]:
    with session_scope(forum) as s:
        people = Directory.load(s)
    proposal = Proposal(id=1, title="t", group="industry", author=author, state="endorsed")
    event = Event(proposal_id=1, seq=5, action=action, from_state="reviewed", to_state="endorsed", actor="system",
                  at=IN_RU_CHE_TERM, payload={})
    return RecipientRules(definition).resolve(action, "system", people.audience(event, proposal))


def test_the_deputy_chair_hears_when_the_chair_wrote_it(forum: Engine, definition: ForumDefinition) -> None:
    assert "nurlanova" in _heard(forum, definition, "consensus", "kuznetsov")
    assert "nurlanova" not in _heard(forum, definition, "consensus", "zhao.lei")  # the chair holds the step himself


def test_the_terms_deputy_hears_when_a_presiding_head_wrote_it(forum: Engine, definition: ForumDefinition) -> None:
    assert "lebedeva" in _heard(forum, definition, "consensus", "petrov")  # RU-CHE's head wrote it: his deputy approves
    assert "lebedeva" not in _heard(forum, definition, "consensus", "zhao.lei")
