"""Finding proposals (filters, words in any case and script, pages) and a working group's overview, on both backends."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine

from models import InvalidInputError, Lifecycle, NotFoundError, session_scope
from models.queries import (
    ProposalFilters,
    count_proposals,
    find_proposals,
    group_overview,
    list_proposals,
    proposal_page,
)
from tests.factories import T0, make_proposal
from tests.factories import create_with_text as create

DAY = dt.timedelta(days=1)


def found(engine: Engine, lifecycle: Lifecycle, **filters: object) -> list[int]:
    with session_scope(engine) as s:
        return [p.id for p in find_proposals(s, lifecycle, ProposalFilters(**filters), now=T0)]  # type: ignore[arg-type,misc]


@pytest.fixture
def texts(forum: Engine, lifecycle: Lifecycle) -> dict[str, int]:
    """Proposals in three scripts, with words in title, summary or body only."""
    return {
        "ru": create(forum, lifecycle, "Развитие ТУРИЗМА в регионах", summary="Новые Маршруты", body="ПРОГРАММА обмена",
                     group="tourism", author="nazarova"),
        "zh": create(forum, lifecycle, "中俄农业合作", body="建设冷链物流中心", submit=True),
        "en": create(forum, lifecycle, "Cold chain terminal", summary="Logistics", body="Budget: 12 million EUR",
                     submit=True, now=T0 - 31 * DAY),
        "odd": create(forum, lifecycle, "Trade fair: 100% of_stands sold", group="trade", author="chen.jing"),
    }


@pytest.mark.parametrize(
    ("words", "names"),
    [
        ("развитие", ["ru"]),  # title, other case
        ("туризма", ["ru"]),
        ("маршруты", ["ru"]),  # summary
        ("программа ОБМЕНА", ["ru"]),  # body, two words
        ("冷链", ["zh"]),  # body, Chinese
        ("农业", ["zh"]),
        ("COLD budget", ["en"]),
        ("chain", ["en"]),
        ("туризма 冷链", []),  # every word must occur
        ("100%", ["odd"]),  # % and _ are plain characters, not wildcards
        ("%", ["odd"]),
        ("e_f", []),  # as a wildcard, _ would match the space in "Trade fair"
        ("of_stands", ["odd"]),
        ("   ", ["ru", "zh", "en", "odd"]),
    ],
)
def test_words_in_any_case_and_script(
    forum: Engine, lifecycle: Lifecycle, texts: dict[str, int], words: str, names: list[str]
) -> None:
    assert found(forum, lifecycle, text=words) == sorted(texts[n] for n in names)


def test_a_number_also_finds_the_proposal_with_that_id(forum: Engine, lifecycle: Lifecycle, texts: dict[str, int]) -> None:
    zh = texts["zh"]
    assert found(forum, lifecycle, text=f"#{zh}") == [zh]
    assert zh in found(forum, lifecycle, text=str(zh))  # and the texts where that number is written
    assert found(forum, lifecycle, text="100") == [texts["odd"]]  # no proposal 100: the word "100" still counts
    assert found(forum, lifecycle, text=f"#{zh} cold") == []  # with other words, it is one word among them
    assert found(forum, lifecycle, text="#99999999999999999999") == []  # beyond any id: a word, never an overflow


def test_filters_alone_and_together(forum: Engine, lifecycle: Lifecycle, texts: dict[str, int]) -> None:
    assert found(forum, lifecycle, state="in_review") == [texts["zh"], texts["en"]]
    assert found(forum, lifecycle, group="tourism") == [texts["ru"]]
    assert found(forum, lifecycle, overdue=True) == [texts["en"]]  # in review for 31 days of 30
    assert found(forum, lifecycle, state="in_review", group="industry", text="cold") == [texts["en"]]
    assert found(forum, lifecycle, state="drafted", group="industry") == []
    assert found(forum, lifecycle, overdue=True, text="农业") == []
    with session_scope(forum) as s:
        assert count_proposals(s, lifecycle, ProposalFilters(state="in_review"), now=T0) == 2
        rows = list_proposals(s, lifecycle, now=T0, text="ПРОГРАММА")
    assert [r["id"] for r in rows] == [texts["ru"]]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (ProposalFilters(state="limbo"), "state: unknown state 'limbo'"),
        (ProposalFilters(group="space"), "group: unknown working group 'space'"),
        (ProposalFilters(text="x" * 201), "search: at most 200 characters"),
        (ProposalFilters(text=" ".join("w" * 11)), "search: at most 10 words"),
        (ProposalFilters(text="a\x00b"), "search: must not contain a NUL character"),
    ],
)
def test_bad_filters_are_refused(forum: Engine, lifecycle: Lifecycle, filters: ProposalFilters, message: str) -> None:
    with session_scope(forum) as s, pytest.raises(InvalidInputError, match=message):
        find_proposals(s, lifecycle, filters, now=T0)


def test_pages_newest_first(forum: Engine, lifecycle: Lifecycle) -> None:
    ids = [create(forum, lifecycle, f"Measure {n}") for n in range(7)]
    with session_scope(forum) as s:
        pages = [proposal_page(s, lifecycle, ProposalFilters(), now=T0, page=n, size=3) for n in (1, 2, 3)]
        assert [p.rows[0].id for p in pages] == [ids[6], ids[3], ids[0]]
        assert [[r.id for r in p.rows] for p in pages][:2] == [ids[6:3:-1], ids[3:0:-1]]
        assert [(p.first, p.last, p.pages, p.total) for p in pages] == [(1, 3, 3, 7), (4, 6, 3, 7), (7, 7, 3, 7)]
        with pytest.raises(NotFoundError, match="page 4 not found"):
            proposal_page(s, lifecycle, ProposalFilters(), now=T0, page=4, size=3)
        with pytest.raises(InvalidInputError):
            proposal_page(s, lifecycle, ProposalFilters(), now=T0, page=0, size=3)
        empty = proposal_page(s, lifecycle, ProposalFilters(group="trade"), now=T0, page=1, size=3)
        assert (empty.rows, empty.total, empty.pages, empty.first) == ([], 0, 1, 0)


def test_group_overview(forum: Engine, lifecycle: Lifecycle) -> None:
    late = make_proposal(forum, lifecycle, state="in_review", now=T0 - 31 * DAY, title="Late")
    fresh = make_proposal(forum, lifecycle, state="in_review", now=T0, title="Fresh")
    doing = make_proposal(forum, lifecycle, state="implementing", now=T0 - 40 * DAY, title="Doing")
    done = make_proposal(forum, lifecycle, state="implementing", now=T0 - 40 * DAY, title="Done")
    make_proposal(forum, lifecycle, group="trade", author="chen.jing", title="Not ours")
    with session_scope(forum) as s:
        lifecycle.apply(s, doing, "report_progress", "zhao.lei", percent=40, comment="Site chosen", now=T0 - 2 * DAY)
        lifecycle.apply(s, done, "report_progress", "kuznetsov", percent=100, comment="Built", now=T0 - 3 * DAY)
        lifecycle.apply(s, done, "complete", "kuznetsov", now=T0 - DAY)
    with session_scope(forum) as s:
        view = group_overview(s, lifecycle, "industry", now=T0)
        assert view.group.chair == "kuznetsov" and {m.handle for m in view.members} == {
            "kuznetsov", "zhao.lei", "nurlanova", "sharma.anil"}
        states = dict(view.by_state)
        assert [p.id for p in states["in_review"]] == [late, fresh] and states["drafted"] == []
        assert [p.id for p in view.overdue] == [late]
        assert [(m.proposal.id, m.percent, m.reports) for m in view.measures] == [(doing, 40, 1), (done, 100, 1)]
        assert view.measures[0].last_report is not None and view.measures[0].last_report.note == "Site chosen"
        assert view.total == 4
        with pytest.raises(NotFoundError):
            group_overview(s, lifecycle, "space", now=T0)
