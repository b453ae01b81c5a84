"""A working group's page and the forum page: who, what, when, and the workflow in force."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from config import ForumDefinition
from models import Lifecycle, session_scope
from tests.factories import T0, make_proposal
from tests.web.conftest import Clock, sign_in
from web.i18n import LANG_COOKIE

DAY = dt.timedelta(days=1)


def english(client: TestClient) -> TestClient:
    """Read the pages in English."""
    client.cookies.set(LANG_COOKIE, "en")
    return client


def section(page: str, heading_id: str) -> str:
    """The part of a page under the section labelled by ``heading_id``."""
    return page.split(f'aria-labelledby="{heading_id}"')[1].split("</section>")[0]


@pytest.fixture
def industry(forum: Engine, lifecycle: Lifecycle) -> dict[str, int]:
    """The industry group's proposals: one overdue, one fresh, two measures (one done), one draft; one of trade."""
    ids = {
        "late": make_proposal(forum, lifecycle, state="in_review", now=T0 - 31 * DAY, title="Late review"),
        "fresh": make_proposal(forum, lifecycle, state="in_review", now=T0, title="Fresh review"),
        "doing": make_proposal(forum, lifecycle, state="implementing", now=T0 - 40 * DAY, title="Agro park"),
        "done": make_proposal(forum, lifecycle, state="implementing", now=T0 - 40 * DAY, title="Seed bank"),
        "draft": make_proposal(forum, lifecycle, title="A draft"),
        "trade": make_proposal(forum, lifecycle, group="trade", author="chen.jing", title="Trade fair"),
    }
    with session_scope(forum) as s:
        lifecycle.apply(s, ids["doing"], "report_progress", "zhao.lei", percent=35, comment="Site chosen", now=T0 - 9 * DAY)
        lifecycle.apply(s, ids["doing"], "report_progress", "zhao.lei", percent=40, comment="Roads", now=T0 - 2 * DAY)
        lifecycle.apply(s, ids["done"], "complete", "kuznetsov", now=T0 - DAY)
    return ids


def test_group_page_for_its_chair(client: TestClient, forum: Engine, clock: Clock, industry: dict[str, int]) -> None:
    english(sign_in(client, forum, "kuznetsov", clock.now))
    r = client.get("/groups/industry")
    assert r.status_code == 200
    page = r.text
    assert "<h1>Industrial production and agriculture</h1>" in page and "You chair this working group." in page
    assert "Николай Кузнецов" in page and "Сауле Нурланова" in page and "Anil Sharma" in page  # chair, deputy, members

    overdue = section(page, "h-overdue")
    assert re.findall(r'href="/proposals/(\d+)"', overdue) == [str(industry["late"])]

    measures = section(page, "h-measures")
    assert re.findall(r'<progress id="progress-(\d+)" max="100" value="(\d+)">', measures) == [
        (str(industry["doing"]), "40"), (str(industry["done"]), "0")]
    assert "(2 reports)" in measures and "No progress report yet." in measures
    assert '<span class="percent">40%</span>' in measures
    assert "Implementing" in measures and "Implemented" in measures

    states = section(page, "h-states")
    headings = re.findall(r"<h3>(.*?) <span", states)
    assert headings == ["Drafted", "In review by the working group", "Implementing", "Implemented"]
    listed = [int(n) for n in re.findall(r'href="/proposals/(\d+)"', states)]
    assert sorted(listed) == sorted(v for k, v in industry.items() if k != "trade")
    assert industry["trade"] not in listed
    assert 'href="/proposals?group=industry"' in states


def test_group_page_is_readable_by_members(client: TestClient, forum: Engine, clock: Clock, industry: dict[str, int]) -> None:
    english(sign_in(client, forum, "zhao.lei", clock.now))
    assert "You are a member of this working group." in client.get("/groups/industry").text
    sign_in(client, forum, "nurlanova", clock.now)
    assert "You are the deputy chair of this working group." in client.get("/groups/industry").text
    sign_in(client, forum, "petrov", clock.now)  # in no working group
    page = client.get("/groups/trade")
    assert page.status_code == 200 and "Trade fair" in page.text and "working group." not in page.text.split("<dl")[0]
    assert client.get("/groups/space").status_code == 404
    assert client.get("/groups/" + "x" * 101).status_code == 422


def test_group_page_empty_and_translated(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "liu.yang", clock.now)  # Chinese; chairs science
    page = client.get("/groups/science").text
    assert "您是本工作组组长。" in page and "本工作组尚无提案。" in page and "没有逾期事项。" in page
    sign_in(client, forum, "volkov", clock.now)
    client.cookies.delete(LANG_COOKIE)
    page = client.get("/groups/science").text
    assert "Вы член этой рабочей группы." in page and "У этой рабочей группы пока нет предложений." in page


def test_pages_need_a_signed_in_member(client: TestClient) -> None:
    for path in ("/groups/industry", "/forum"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/sign-in?next=")


def test_forum_page(client: TestClient, forum: Engine, clock: Clock, definition: ForumDefinition, lifecycle: Lifecycle) -> None:
    make_proposal(forum, lifecycle, state="in_review", title="Counted")
    english(sign_in(client, forum, "deshmukh", clock.now))
    page = client.get("/forum").text

    members = section(page, "h-member-states")
    for name in ("China", "India", "Kazakhstan", "Kyrgyzstan", "Pakistan", "Russian Federation", "Tajikistan", "Uzbekistan"):
        assert name in members
    rows = re.findall(r'<tr class="region" data-region="([A-Z0-9-]+)">(.*?)</tr>', members, re.S)
    assert sorted(code for code, _ in rows) == sorted(definition.regions)
    che = dict(rows)["RU-CHE"]
    assert "Russian Federation" in che and "(RU-CHE)" in che and "Алексей Петров" in che
    assert "Priya Deshmukh" in dict(rows)["IN-MH"]

    presiding = section(page, "h-presiding")
    terms = re.findall(r'<tr class="term( is-current)?"', presiding)
    assert terms == [" is-current", "", ""]  # RU-CHE presides on 2021-03-01
    current = presiding.split('class="term is-current"')[1].split("</tr>")[0]
    assert "RU-CHE" in current and "Presiding now" in current and "October 29, 2020" in current
    assert "Ольга Лебедева" in current  # the term's deputy
    assert "Days no presiding term covers" in presiding and "From January 1, 2029 onwards" in presiding

    groups = section(page, "h-groups")
    for g in definition.working_groups:
        row = groups.split(f'data-group="{g.key}"')[1].split("</tr>")[0]
        assert f'<a href="/groups/{g.key}">{html.escape(g.name)}</a>' in row
    industry = groups.split('data-group="industry"')[1].split("</tr>")[0]
    assert "Николай Кузнецов" in industry and "Сауле Нурланова" in industry

    workflow = section(page, "h-workflow")
    states = re.findall(r'<tr class="wf-state" data-state="(\w+)">', workflow)
    assert states == definition.workflow.state_names
    in_review = workflow.split('data-state="in_review"')[1].split("</tr>")[0]
    assert "30 days" in in_review and "7, 2 days before the deadline" in in_review and ">1</td>" in in_review
    actions = dict(re.findall(r'<tr class="wf-action" data-action="(\w+)">(.*?)</tr>', workflow, re.S))
    assert list(actions) == [a.name for a in definition.workflow.actions]
    assert "Recommend for endorsement" in actions["recommend"] and "the chair of the working group" in actions["recommend"]
    assert "Never on their own proposal" in actions["recommend"]
    assert "A comment is required." in actions["return"]
    assert "the author; the chair of the working group" in actions["report_progress"]
    assert "With the percentage done." in actions["report_progress"]
    assert "the scheduled review" in actions["silence"]
    assert "stateDiagram-v2" in workflow and "drafted --&gt; in_review: submit (author)" in workflow


def test_forum_page_marks_the_term_in_force_and_translates(client: TestClient, forum: Engine, clock: Clock) -> None:
    clock.now = dt.datetime(2023, 6, 1, 12, tzinfo=dt.UTC)
    sign_in(client, forum, "petrov", clock.now)  # Russian
    page = client.get("/forum").text
    presiding = section(page, "h-presiding")
    current = presiding.split('class="term is-current"')[1].split("</tr>")[0]
    assert "UZ-SA" in current and "Председательствует сейчас" in current and "Ойбек Нематов" in current
    assert "С 1 января 2029\u202fг. и далее" in presiding
    assert "Российская Федерация" in page and "Челябинская область" in page and "Порядок работы" in page
    sign_in(client, forum, "wang.jianguo", clock.now)  # Chinese
    page = client.get("/forum").text
    assert "俄罗斯" in page and "现任轮值主席" in page and "没有轮值主席的日期" in page and "工作流程" in page


@pytest.mark.parametrize(
    ("lang", "industry"), [("ru", "Промышленное производство и сельское хозяйство"), ("zh", "工业生产与农业")]
)
def test_working_groups_are_named_in_the_readers_language(
    client: TestClient, forum: Engine, clock: Clock, definition: ForumDefinition, lang: str, industry: str,
) -> None:
    sign_in(client, forum, "kuznetsov", clock.now)
    client.cookies.set(LANG_COOKIE, lang)
    english = next(g.name for g in definition.working_groups if g.key == "industry")
    forum_name = definition.forum.names[lang]  # type: ignore[index]
    for path in ("/", "/groups/industry", "/proposals/new", "/forum", "/proposals"):
        page = html.unescape(client.get(path).text)
        assert industry in page and english not in page, path
        assert forum_name in page and definition.forum.name not in page, path
    group_page = client.get("/groups/industry").text
    assert f"<h1>{industry}</h1>" in group_page and f"<title>{industry} · " in group_page
    options = re.findall(r'<option value="(\w+)"[^>]*>([^<]+)</option>', client.get("/proposals/new").text)
    names = [name for _, name in options]
    assert names == sorted(names) and ("industry", industry) in options


def test_a_title_cannot_turn_the_text_after_it_around(
    client: TestClient, forum: Engine, clock: Clock, lifecycle: Lifecycle,
) -> None:
    hostile = "\u202eevil title"  # RIGHT-TO-LEFT OVERRIDE, never closed
    pid = make_proposal(forum, lifecycle, state="in_review", title=hostile)
    sign_in(client, forum, "kuznetsov", clock.now)
    client.cookies.set(LANG_COOKIE, "en")
    for path in ("/", "/groups/industry", "/proposals", f"/proposals/{pid}", f"/proposals/{pid}/actions/return"):
        page = client.get(path).text
        shown = [m.start() for m in re.finditer(hostile, page)]
        assert shown, path
        for at in shown:  # each time the title is shown, it is isolated from what follows
            before = page[max(0, at - 6):at]
            assert before.endswith("<bdi>") or before.endswith("\u2068"), (path, before)
            assert page[at + len(hostile):].startswith(("</bdi>", "\u2069")), path
