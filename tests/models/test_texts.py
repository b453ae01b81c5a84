"""Text versions on SQLite and PostgreSQL: editing a draft, frozen texts under review, endorsements tied to a text."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import select

from models import ConflictError, InvalidInputError, Lifecycle, NotAllowedError, NotFoundError, events_of, session_scope
from models.tables import EndorsementDecision, Event, Proposal, ProposalText, ProposalTextEdit
from models.texts import all_texts, diff_view, proposal_create, text_edit, version_of, versions_of
from tests.factories import AUTHOR, CHAIR, ONE_HEAD_PER_STATE, T0, load, make_proposal

BUDGET = "Scope: a cold-chain terminal.\nSite: Chelyabinsk.\n"
BUDGET_V2 = "Scope: a cold-chain terminal.\nSite: Chelyabinsk.\nBudget: 12 million EUR over three years.\n"


def act(engine: Engine, lc: Lifecycle, pid: int, action: str, actor: str, now: dt.datetime = T0, **kw: Any) -> list[Event]:
    with session_scope(engine) as s:
        return lc.apply(s, pid, action, actor, now=now, **kw)


def edit(engine: Engine, lc: Lifecycle, pid: int, actor: str = AUTHOR, now: dt.datetime = T0, **fields: Any) -> Event | None:
    with session_scope(engine) as s:
        return lc.edit(s, pid, actor, text_edit(**fields), now=now)


def counts(engine: Engine, pid: int) -> tuple[int, int, int, int]:
    """Proposal version, text version, events, text rows: what an edit would change."""
    with session_scope(engine) as s:
        p = s.get(Proposal, pid)
        assert p is not None
        n_events = s.exec(select(func.count()).select_from(Event).where(Event.proposal_id == pid)).one()
        n_texts = s.exec(select(func.count()).select_from(ProposalText).where(ProposalText.proposal_id == pid)).one()
        return p.version, p.text_version, n_events, n_texts


def drafted_with_body(engine: Engine, lc: Lifecycle) -> int:
    with session_scope(engine) as s:
        data = proposal_create(group="industry", author=AUTHOR, title="Joint agro-industrial park", body=BUDGET.encode())
        p = lc.create_proposal(session=s, proposal_in=data, now=T0)
        assert p.id is not None
        return p.id


def test_creating_writes_text_version_one(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = drafted_with_body(forum, lifecycle)
    with session_scope(forum) as s:
        (v1,) = versions_of(s, pid)
        assert (v1.version, v1.title, v1.body, v1.author, v1.at) == (1, "Joint agro-industrial park", BUDGET, AUTHOR, T0)
        assert events_of(s, pid)[0].payload["text_version"] == 1
    assert load(forum, pid).text_version == 1


def test_edit_after_a_return_and_resubmit(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = drafted_with_body(forum, lifecycle)
    act(forum, lifecycle, pid, "submit", AUTHOR)
    act(forum, lifecycle, pid, "return", CHAIR, comment="Add the budget")
    assert load(forum, pid).text_version == 1  # a return alone is no new text

    later = T0 + dt.timedelta(days=1)
    ev = edit(forum, lifecycle, pid, body=BUDGET_V2, title="Joint agro-industrial park  with budget", now=later)
    assert ev is not None and ev.action == "edit" and ev.from_state == ev.to_state == "drafted"
    assert ev.payload == {"fields": ["title", "body"], "text_version": 2}
    p = load(forum, pid)
    assert (p.text_version, p.title, p.body, p.state) == (2, "Joint agro-industrial park with budget", BUDGET_V2, "drafted")

    submitted = act(forum, lifecycle, pid, "submit", AUTHOR, now=later)
    assert submitted[0].payload["text_version"] == 2
    with session_scope(forum) as s:
        v2 = version_of(s, pid)
        assert (v2.version, v2.author, v2.at, v2.summary) == (2, AUTHOR, later, "")
        assert version_of(s, pid, 1).body == BUDGET  # the earlier text is kept
        events = events_of(s, pid)
        assert [e.payload["text_version"] for e in events] == [1, 1, 1, 2, 2]
        assert lifecycle.replay(events) == "in_review"
        assert lifecycle.replay_text_version(events) == 2
        view = diff_view(s, pid)
        assert (view["from"], view["to"], view["changed"]) == (1, 2, ["title", "body"])
        assert "+Budget: 12 million EUR over three years." in view["unified"]
        assert "--- v1/body" in view["unified"] and "+++ v2/body" in view["unified"]
        assert [t["version"] for t in all_texts(s)] == [1, 2]


def test_an_edit_that_changes_nothing_writes_nothing(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = drafted_with_body(forum, lifecycle)
    before = counts(forum, pid)
    assert edit(forum, lifecycle, pid, body=BUDGET, title=" Joint   agro-industrial park ") is None
    assert counts(forum, pid) == before


def test_only_the_author_edits_and_only_a_draft(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = drafted_with_body(forum, lifecycle)
    before = counts(forum, pid)
    with pytest.raises(NotAllowedError, match=r"only the author \(zhao.lei\) may.*allowed now: submit by zhao.lei"):
        edit(forum, lifecycle, pid, actor=CHAIR, body="x")
    with pytest.raises(NotFoundError, match="member 'nobody'"):
        edit(forum, lifecycle, pid, actor="nobody", body="x")
    with pytest.raises(NotFoundError, match="proposal 999"):
        edit(forum, lifecycle, 999, body="x")
    with session_scope(forum) as s, pytest.raises(ConflictError, match="expected 7"):
        lifecycle.edit(s, pid, AUTHOR, text_edit(body="x"), now=T0, expected_version=7)
    assert counts(forum, pid) == before
    act(forum, lifecycle, pid, "submit", AUTHOR)
    before = counts(forum, pid)
    with pytest.raises(NotAllowedError, match="'edit' is not possible in state 'in_review'"):
        edit(forum, lifecycle, pid, body="x")
    with pytest.raises(InvalidInputError, match="not taken as an action"):
        act(forum, lifecycle, pid, "edit", AUTHOR)
    assert counts(forum, pid) == before
    with session_scope(forum) as s:
        draft = load(forum, make_proposal(forum, lifecycle))
        allowed = {a.action: a.actors for a in lifecycle.allowed(s, draft, T0)}
        assert allowed["edit"] == [AUTHOR]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"body": b"caf\xe9"}, r"^body: is not valid UTF-8 text \(byte 3\)$"),
        ({"body": "a\x00b"}, r"^body: must not contain a NUL character$"),
        ({"summary": "a\x00b"}, r"^summary: must not contain a NUL character$"),
        ({"title": "caf\udce9"}, r"^title: is not valid UTF-8 text \(character 3\)$"),
        ({"title": " \t "}, r"^title: must not be empty$"),
        ({"body": "x" * 200_001}, r"^body: String should have at most 200000 characters$"),
        ({}, r"^nothing to edit: give a title, a summary or a body$"),
    ],
)
def test_bad_text_is_one_line_and_refused_before_anything_is_written(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        text_edit(**fields)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)
    if fields:
        rest = {k: v for k, v in fields.items() if k != "title"}
        with pytest.raises(InvalidInputError, match=message):
            proposal_create(group="industry", author=AUTHOR, title=fields.get("title", "t"), **rest)
    assert text_edit(body="x" * 200_000).body == "x" * 200_000
    assert text_edit(body="Бюджет: 12 млн".encode()).body == "Бюджет: 12 млн"


def test_endorsements_do_not_count_in_a_round_on_a_new_text(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = drafted_with_body(forum, lifecycle)
    act(forum, lifecycle, pid, "submit", AUTHOR)
    act(forum, lifecycle, pid, "recommend", CHAIR)
    earlier = ONE_HEAD_PER_STATE[:-1]  # all but Uzbekistan
    for head in earlier:
        assert act(forum, lifecycle, pid, "endorse", head)[0].payload["text_version"] == 1
    act(forum, lifecycle, pid, "object", "yousafzai", comment="No budget")
    act(forum, lifecycle, pid, "return", CHAIR, comment="Add the budget")
    edit(forum, lifecycle, pid, body=BUDGET_V2)
    act(forum, lifecycle, pid, "submit", AUTHOR)
    (opened,) = act(forum, lifecycle, pid, "recommend", CHAIR)

    assert opened.payload["round"] == 2 and opened.payload["text_version"] == 2
    assert opened.payload["earlier_endorsers"] == sorted(earlier)
    change = opened.payload["text_change"]
    assert (change["from_version"], change["to_version"], change["added"], change["removed"]) == (1, 2, 1, 0)
    assert change["first"] == [{"field": "body", "sign": "+", "text": "Budget: 12 million EUR over three years."}]
    with session_scope(forum) as s:
        p = s.get(Proposal, pid)
        assert p is not None
        must = lifecycle.must_act(s, p, T0)
        assert set(earlier) <= set(must) and "karimov" in must  # everybody is asked again
    # Uzbekistan alone does not make consensus: the seven endorsements of text 1 do not count for text 2.
    events = act(forum, lifecycle, pid, "endorse", "karimov")
    assert [e.action for e in events] == ["endorse"] and load(forum, pid).state == "reviewed"
    with session_scope(forum) as s:
        decisions = s.exec(select(EndorsementDecision).where(EndorsementDecision.round == 2)).all()
        assert [(d.member, d.text_version) for d in decisions] == [("karimov", 2)]
    # At the deadline the silence procedure names only those who endorsed this text.
    with session_scope(forum) as s:
        silence = lifecycle.close_round(s, pid, now=T0 + dt.timedelta(days=22))
        assert silence is not None and silence.payload["endorsed_by"] == ["UZ-SA"] and silence.payload["text_version"] == 2


def test_a_new_round_on_the_same_text_says_it_did_not_change(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    act(forum, lifecycle, pid, "endorse", "petrov")
    act(forum, lifecycle, pid, "object", "li.ming", comment="Not yet")
    (opened,) = act(forum, lifecycle, pid, "recommend", CHAIR)
    assert opened.payload["earlier_endorsers"] == ["petrov"]
    assert opened.payload["text_change"] == {"from_version": 1, "to_version": 1, "added": 0, "removed": 0, "first": []}
    with session_scope(forum) as s:
        p = s.get(Proposal, pid)
        assert p is not None and "petrov" in lifecycle.must_act(s, p, T0)


def test_decisions_on_another_text_do_not_count_even_in_the_same_round(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    with session_scope(forum) as s:  # a decision recorded against another text (only a hand-edited database has one)
        s.add(EndorsementDecision(proposal_id=pid, round=1, member="petrov", region="RU-CHE", country="RU",
                                  decision="endorse", text_version=9, at=T0))
    with session_scope(forum) as s:
        p = s.get(Proposal, pid)
        assert p is not None
        assert "petrov" in lifecycle.must_act(s, p, T0)
        assert "petrov" in lifecycle.must_act_many(s, [p], T0)[pid]
        assert lifecycle.close_rounds(s, [p], now=T0 + dt.timedelta(days=22))
        assert s.exec(select(Event).where(Event.action == "silence")).one().payload["endorsed_by"] == []


def test_replay_notices_a_wrong_text_version(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = drafted_with_body(forum, lifecycle)
    edit(forum, lifecycle, pid, body="one")
    edit(forum, lifecycle, pid, summary="two")
    act(forum, lifecycle, pid, "submit", AUTHOR)
    with session_scope(forum) as s:
        events = events_of(s, pid)
        assert lifecycle.replay_text_version(events) == 3 == load(forum, pid).text_version
        events[3].payload = {"text_version": 2}  # the submit claims the older text
        with pytest.raises(ValueError, match="concerns text version 2, replay gives 3"):
            lifecycle.replay_text_version(events)
        s.rollback()


def test_text_versions_that_do_not_exist_are_not_found(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = drafted_with_body(forum, lifecycle)
    with session_scope(forum) as s:
        with pytest.raises(NotFoundError, match="has no text version 2 \\(versions 1 to 1\\)"):
            version_of(s, pid, 2)
        with pytest.raises(NotFoundError, match="proposal 42 not found"):
            diff_view(s, 42)
        assert diff_view(s, pid)["unified"] == ""  # one version: nothing to compare
        # Numbers no version can have, up to ones the database's integers cannot hold: not found, never an overflow.
        for wanted in (0, -1, 2**31, 2**63, 10**25):
            with pytest.raises(NotFoundError, match=f"has no text version {wanted} \\(versions 1 to 1\\)"):
                version_of(s, pid, wanted)
            with pytest.raises(NotFoundError, match=f"has no text version {wanted} "):
                diff_view(s, pid, to_version=wanted)
            with pytest.raises(NotFoundError, match=f"has no text version {wanted} "):
                diff_view(s, pid, from_version=wanted, to_version=1)


def test_the_input_model_is_what_edit_takes(forum: Engine, lifecycle: Lifecycle) -> None:
    pid = drafted_with_body(forum, lifecycle)
    with session_scope(forum) as s:
        ev = lifecycle.edit(s, pid, AUTHOR, ProposalTextEdit(summary="Short."), now=T0)
        assert ev is not None and ev.payload["fields"] == ["summary"]
    assert load(forum, pid).summary == "Short."
