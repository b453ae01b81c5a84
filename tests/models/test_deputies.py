"""Deputies on SQLite and PostgreSQL: nobody takes a no-self step on their own proposal, and it never gets stuck.

A chair who writes a proposal in their own group hands the recommendation to the group's deputy chair; a head of
the presiding region who writes one hands the approval to the term's deputy. Deputies hold the step in every
respect: allowed actions, reminders, escalations and the hand-over notice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import Engine
from sqlmodel import select

from config import DEFAULT_FORUM_FILE, ForumDefinition
from config.definition import parse_definition
from models import Lifecycle, NotAllowedError, session_scope, sync_definition
from models.outbox import Delivery
from models.review import sweep
from models.tables import Event, PresidingTerm, Proposal, ProposalCreate, WorkingGroup
from notifications.planning import plan_deliveries
from tests.factories import CHAIR, T0, load

DAY = dt.timedelta(days=1)
# One head per member state, without petrov and karimov (the authors below): sokolova and yusupova stand for RU and UZ.
ENDORSERS = ["wang.jianguo", "deshmukh", "seitkazieva", "toktogulov", "khan.ayesha", "sokolova", "rakhimov", "yusupova"]


@pytest.fixture(scope="module")
def heads_in_industry() -> ForumDefinition:
    """The shipped forum, where the heads of Chelyabinsk (petrov) and Samarkand (karimov) also work in industry."""
    raw: dict[str, Any] = yaml.safe_load(DEFAULT_FORUM_FILE.read_text(encoding="utf-8"))
    raw["working_groups"][0]["members"] += ["petrov", "karimov"]
    return parse_definition(raw, "heads-in-industry.yaml")


@pytest.fixture
def heads_forum(engine: Engine, heads_in_industry: ForumDefinition) -> tuple[Engine, Lifecycle]:
    with session_scope(engine) as s:
        sync_definition(s, heads_in_industry)
    return engine, Lifecycle(heads_in_industry)


def act(engine: Engine, lc: Lifecycle, pid: int, action: str, actor: str, now: dt.datetime = T0, **kw: Any) -> list[Event]:
    with session_scope(engine) as s:
        return lc.apply(s, pid, action, actor, now=now, **kw)


def refused(engine: Engine, lc: Lifecycle, pid: int, action: str, actor: str, now: dt.datetime = T0) -> str:
    before = load(engine, pid)
    with pytest.raises(NotAllowedError) as info:
        act(engine, lc, pid, action, actor, now, comment="c")
    after = load(engine, pid)
    assert (after.state, after.version) == (before.state, before.version)
    return str(info.value)


def endorsed_by(engine: Engine, lc: Lifecycle, author: str, now: dt.datetime) -> int:
    """A proposal of ``author`` in industry, recommended by the chair and endorsed by consensus at ``now``."""
    with session_scope(engine) as s:
        p = lc.create_proposal(session=s, proposal_in=ProposalCreate(group="industry", author=author, title="Dry port"), now=now)
        assert p.id is not None
        pid = p.id
    act(engine, lc, pid, "submit", author, now)
    act(engine, lc, pid, "recommend", CHAIR, now)
    for head in ENDORSERS:
        act(engine, lc, pid, "endorse", head, now)
    assert load(engine, pid).state == "endorsed"
    return pid


def allowed(engine: Engine, lc: Lifecycle, pid: int, now: dt.datetime = T0) -> dict[str, list[str]]:
    with session_scope(engine) as s:
        p = s.get(Proposal, pid)
        assert p is not None
        return {a.action: a.actors for a in lc.allowed(s, p, now)}


def notices(engine: Engine, pid: int, action: str) -> list[Event]:
    with session_scope(engine) as s:
        return list(s.exec(select(Event).where(Event.proposal_id == pid, Event.action == action).order_by(Event.seq)))  # type: ignore[arg-type]


def test_sync_stores_the_deputies(forum: Engine, definition: ForumDefinition) -> None:
    with session_scope(forum) as s:
        groups = {g.key: g.deputy_chair for g in s.exec(select(WorkingGroup))}
        terms = {t.region: t.deputy for t in s.exec(select(PresidingTerm))}
    assert groups == {g.key: g.deputy_chair for g in definition.working_groups}
    assert groups["industry"] == "nurlanova" and None not in groups.values()
    assert terms == {"RU-CHE": "lebedeva", "UZ-SA": "nematov", "KZ-55": "zhaksybekov"}


def test_the_presiding_head_does_not_approve_their_own_proposal_the_deputy_does(
    heads_forum: tuple[Engine, Lifecycle],
) -> None:
    engine, lc = heads_forum
    own = endorsed_by(engine, lc, "petrov", T0)  # RU-CHE presides: petrov is its head
    assert allowed(engine, lc, own) == {"approve": ["lebedeva"], "refer_back": ["petrov"]}
    message = refused(engine, lc, own, "approve", "petrov")
    assert "petrov may not approve their own proposal" in message and "approve by lebedeva" in message
    assert "the deputy for the presiding region RU-CHE (lebedeva)" in refused(engine, lc, own, "approve", "karimov")
    (event,) = act(engine, lc, own, "approve", "lebedeva")
    assert (event.action, event.actor, load(engine, own).state) == ("approve", "lebedeva", "implementing")

    # On a proposal the head did not write, the head approves and the deputy may not.
    other = endorsed_by(engine, lc, "zhao.lei", T0)
    assert allowed(engine, lc, other)["approve"] == ["petrov"]
    assert "only the head of the presiding region RU-CHE may" in refused(engine, lc, other, "approve", "lebedeva")
    act(engine, lc, other, "approve", "petrov")
    assert load(engine, other).state == "implementing"


def test_the_deputy_hears_the_reminders_and_escalations_of_the_approval(heads_forum: tuple[Engine, Lifecycle]) -> None:
    engine, lc = heads_forum
    pid = endorsed_by(engine, lc, "petrov", T0)
    deadline = T0 + 14 * DAY
    sweep(engine, lc, deadline - 5 * DAY)
    (reminder,) = notices(engine, pid, "remind")
    assert reminder.payload["recipients"] == ["lebedeva", "petrov"]  # approve by lebedeva, refer_back by petrov
    sweep(engine, lc, deadline + 7 * DAY)
    levels = {e.payload["level"]: e.payload["recipients"] for e in notices(engine, pid, "escalate")}
    assert levels == {1: [CHAIR], 2: ["lebedeva"]}  # the presiding region's level reaches its deputy, not the author
    with session_scope(engine) as s:
        plan_deliveries(s, lc, now=deadline + 7 * DAY)
    with session_scope(engine) as s:
        reached = set(s.exec(select(Delivery.recipient).where(Delivery.event_id == reminder.id)))
    assert "lebedeva" in reached


def test_a_hand_over_reaches_the_deputy_of_the_new_term_when_its_head_wrote_the_proposal(
    heads_forum: tuple[Engine, Lifecycle],
) -> None:
    engine, lc = heads_forum
    entered = dt.datetime(2022, 12, 28, 9, 0, tzinfo=dt.UTC)
    pid = endorsed_by(engine, lc, "karimov", entered)
    assert allowed(engine, lc, pid, entered)["approve"] == ["petrov"]  # RU-CHE still presides
    new_year = dt.datetime(2023, 1, 1, 0, 0, tzinfo=dt.UTC)
    sweep(engine, lc, new_year)
    (handover,) = notices(engine, pid, "handover")
    assert handover.payload == {"from_region": "RU-CHE", "to_region": "UZ-SA", "recipients": ["nematov"], "text_version": 1}
    assert "karimov may not approve their own proposal" in refused(engine, lc, pid, "approve", "karimov", new_year)
    act(engine, lc, pid, "approve", "nematov", new_year)
    assert load(engine, pid).state == "implementing"


def test_the_deputy_chair_hears_the_reminders_and_escalations_of_the_recommendation(
    forum: Engine, lifecycle: Lifecycle,
) -> None:
    with session_scope(forum) as s:
        data = ProposalCreate(group="industry", author=CHAIR, title="Agro park")
        p = lifecycle.create_proposal(session=s, proposal_in=data, now=T0)
        assert p.id is not None
        pid = p.id
    act(forum, lifecycle, pid, "submit", CHAIR)
    deadline = T0 + 30 * DAY
    sweep(forum, lifecycle, deadline - 7 * DAY)
    (reminder,) = notices(forum, pid, "remind")
    assert reminder.payload["recipients"] == [CHAIR, "nurlanova"]  # return/reject by the chair, recommend by the deputy
    sweep(forum, lifecycle, deadline)
    (escalation,) = notices(forum, pid, "escalate")
    assert escalation.payload["recipients"] == ["nurlanova"]  # the group chair's level: the chair wrote it
    act(forum, lifecycle, pid, "recommend", "nurlanova", deadline)
    assert load(forum, pid).state == "reviewed"


def test_a_no_self_step_without_a_deputy_is_left_to_the_others(engine: Engine) -> None:
    # A forum where heads may not endorse their own proposals: the other heads still can, so no deputy is needed.
    raw: dict[str, Any] = yaml.safe_load(DEFAULT_FORUM_FILE.read_text(encoding="utf-8"))
    raw["working_groups"][0]["members"].append("petrov")
    endorse = next(a for a in raw["workflow"]["actions"] if a["name"] == "endorse")
    endorse["not_author"] = True
    defn = parse_definition(raw, "no-self-endorsement.yaml")
    with session_scope(engine) as s:
        sync_definition(s, defn)
    lc = Lifecycle(defn)
    with session_scope(engine) as s:
        p = lc.create_proposal(session=s, proposal_in=ProposalCreate(group="industry", author="petrov", title="Rail hub"), now=T0)
        assert p.id is not None
        pid = p.id
    act(engine, lc, pid, "submit", "petrov")
    act(engine, lc, pid, "recommend", CHAIR)
    assert "petrov may not endorse their own proposal" in refused(engine, lc, pid, "endorse", "petrov")
    endorsers = allowed(engine, lc, pid)["endorse"]
    assert "petrov" not in endorsers and "sokolova" in endorsers
    with session_scope(engine) as s:
        row = s.get(Proposal, pid)
        assert row is not None
        assert "petrov" not in lc.must_act(s, row, T0)


def test_presiding_gaps_name_the_uncovered_days() -> None:
    from models.queries import presiding_gaps

    terms = [
        PresidingTerm(region="UZ-SA", start=dt.date(2023, 3, 1), end=dt.date(2025, 12, 31)),
        PresidingTerm(region="RU-CHE", start=dt.date(2020, 10, 29), end=dt.date(2022, 12, 31)),
    ]
    assert [g["message"] for g in presiding_gaps(terms)] == [
        "no presiding term from 2023-01-01 to 2023-02-28: add one to the forum definition",
        "no presiding term after 2025-12-31: add one to the forum definition",
    ]
    assert presiding_gaps(terms)[0] == {
        "from": "2023-01-01", "to": "2023-02-28", "message": presiding_gaps(terms)[0]["message"],
    }
