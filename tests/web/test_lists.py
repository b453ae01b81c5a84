"""The list of proposals: filters, text search, pages, the CSV of what is shown, escaping, empty states."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from models import Lifecycle
from tests.factories import T0, make_proposal
from tests.factories import create_with_text as create
from tests.web.conftest import BASE, Clock, sign_in
from web.i18n import LANG_COOKIE

DAY = dt.timedelta(days=1)


def shown_ids(page: str) -> list[int]:
    """The proposals a list page shows, in order."""
    return [int(n) for n in re.findall(r'<tr class="proposal[^"]*" data-id="(\d+)">', page)]


def english(client: TestClient) -> TestClient:
    """Read the pages in English (the switch's cookie)."""
    client.cookies.set(LANG_COOKIE, "en")
    return client


@pytest.fixture
def seeded(forum: Engine, lifecycle: Lifecycle) -> dict[str, int]:
    """Proposals of several groups, states and scripts around T0."""
    return {
        "late": create(forum, lifecycle, "Cold chain terminal", summary="Logistics", body="Budget: 12 million EUR",
                       submit=True, now=T0 - 31 * DAY),
        "zh": create(forum, lifecycle, "中俄农业合作", body="建设冷链物流中心", submit=True),
        "ru": create(forum, lifecycle, "Развитие ТУРИЗМА", summary="Новые маршруты", body="ПРОГРАММА обмена",
                     group="tourism", author="nazarova"),
        "trade": create(forum, lifecycle, "Trade fair", group="trade", author="chen.jing", submit=True, now=T0 - 40 * DAY),
        "draft": create(forum, lifecycle, "Seed bank", body="Cold storage of seeds"),
    }


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ({}, ["draft", "trade", "ru", "zh", "late"]),  # newest first
        ({"state": "in_review"}, ["trade", "zh", "late"]),
        ({"group": "industry"}, ["draft", "zh", "late"]),
        ({"overdue": "1"}, ["trade", "late"]),
        ({"search": "cold"}, ["draft", "late"]),  # title or body
        ({"search": "COLD", "state": "drafted"}, ["draft"]),
        ({"state": "in_review", "group": "industry", "overdue": "1"}, ["late"]),
        ({"overdue": "1", "group": "trade", "search": "fair"}, ["trade"]),
        ({"state": "", "group": "", "search": ""}, ["draft", "trade", "ru", "zh", "late"]),  # the form's "any"
        ({"search": "туризма"}, ["ru"]),
        ({"search": "маршруты программа"}, ["ru"]),  # summary and body, other case
        ({"search": "冷链"}, ["zh"]),
        ({"search": "冷链 cold"}, []),
    ],
)
def test_filters_each_and_together(
    client: TestClient, forum: Engine, clock: Clock, seeded: dict[str, int], query: dict[str, str], names: list[str]
) -> None:
    sign_in(client, forum, "kuznetsov", clock.now)
    r = client.get("/proposals", params=query)
    assert r.status_code == 200, r.text
    assert shown_ids(r.text) == [seeded[n] for n in names]
    if query.get("search"):  # the form shows what was asked
        assert f'value="{html.escape(query["search"])}"' in r.text
    if query.get("state"):
        assert f'<option value="{query["state"]}" selected>' in r.text
    if query.get("overdue"):
        assert 'name="overdue" value="1" checked' in r.text


def test_rows_link_to_the_proposal_and_mark_overdue(
    client: TestClient, forum: Engine, clock: Clock, seeded: dict[str, int]
) -> None:
    english(sign_in(client, forum, "deshmukh", clock.now))
    page = client.get("/proposals").text
    late = page.split(f'data-id="{seeded["late"]}"')[1].split("</tr>")[0]
    assert f'<a href="/proposals/{seeded["late"]}"><bdi>Cold chain terminal</bdi></a>' in late
    assert "mark-overdue" in late and "In review by the working group" in late
    assert "赵磊" in late  # the author's name
    draft = page.split(f'data-id="{seeded["draft"]}"')[1].split("</tr>")[0]
    assert "mark-overdue" not in draft and "Drafted" in draft


def test_pages_keep_the_filters(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    ids = [create(forum, lifecycle, f"Measure {n}") for n in range(25)]
    seed = create(forum, lifecycle, "Seed bank")
    other = create(forum, lifecycle, "Trade fair", group="trade", author="chen.jing")
    english(sign_in(client, forum, "kuznetsov", clock.now))

    first = client.get("/proposals").text
    assert shown_ids(first) == [other, seed, *ids[:1:-1]]  # 25 of 27, newest first
    assert "Proposals 1–25 of 27, newest first." in first and "Page 1 of 2" in first
    assert 'rel="prev"' not in first
    following = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert following
    second = client.get(html.unescape(following.group(1))).text
    assert shown_ids(second) == ids[1::-1] and "Proposals 26–27 of 27" in second
    assert 'rel="next"' not in second and 'rel="prev"' in second

    # Exactly one page's worth: no pager, and page 2 of it does not exist.
    measures = {"group": "industry", "search": "measure"}
    exact = client.get("/proposals", params=measures).text
    assert shown_ids(exact) == ids[::-1] and "Page 1 of" not in exact and 'rel="next"' not in exact
    assert client.get("/proposals", params=measures | {"page": "2"}).status_code == 404

    # One more than a page: the links to the next and the last page keep every filter.
    drafts = client.get("/proposals", params={"group": "industry", "state": "drafted"}).text
    assert shown_ids(drafts) == [seed, *ids[:0:-1]]
    link = re.search(r'<a href="([^"]+)" rel="last">', drafts)
    assert link
    query = parse_qs(urlsplit(html.unescape(link.group(1))).query)
    assert query == {"group": ["industry"], "state": ["drafted"], "page": ["2"]}
    last = client.get(html.unescape(link.group(1))).text
    assert shown_ids(last) == [ids[0]]
    first_link = re.search(r'<a href="([^"]+)" rel="first">', last)
    assert first_link and parse_qs(urlsplit(html.unescape(first_link.group(1))).query) == {
        "group": ["industry"], "state": ["drafted"]}

    assert client.get("/proposals", params={"page": 3}).status_code == 404
    assert client.get("/proposals", params={"group": "education", "page": 2}).status_code == 404
    assert client.get("/proposals", params={"group": "education"}).status_code == 200  # page 1 may be empty
    for bad in ("0", "-1", "abc", "99999999999999999999"):
        assert client.get("/proposals", params={"page": bad}).status_code == 422, bad


def test_empty_states(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    english(sign_in(client, forum, "kuznetsov", clock.now))
    none = client.get("/proposals")
    assert none.status_code == 200 and "There are no proposals yet" in none.text and "<table" not in none.text
    create(forum, lifecycle, "Seed bank")
    nothing = client.get("/proposals", params={"search": "volcano"})
    assert "No proposal matches these filters" in nothing.text and "<table" not in nothing.text
    assert '<a href="/proposals">Clear the filters</a>' in nothing.text


@pytest.mark.parametrize(
    "query",
    [{"state": "limbo"}, {"group": "space"}, {"search": "x" * 201}, {"search": "a\x00b"}, {"overdue": "maybe"}],
)
def test_bad_filters_are_refused(client: TestClient, forum: Engine, clock: Clock, query: dict[str, str]) -> None:
    sign_in(client, forum, "kuznetsov", clock.now)
    assert client.get("/proposals", params=query).status_code == 422
    assert client.get("/proposals.csv", params=query).status_code == 422


def test_list_and_csv_need_a_signed_in_member(client: TestClient) -> None:
    for path in ("/proposals", "/proposals.csv?group=trade"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/sign-in?next=")


def table_rows(page: str) -> list[list[str]]:
    """The cells of a list page's rows, as text."""
    rows = []
    for row in re.findall(r'<tr class="proposal[^"]*" data-id="\d+">(.*?)</tr>', page, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return rows


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith("\ufeff".encode())  # Excel needs the byte order mark to read UTF-8
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


@pytest.mark.parametrize("lang", ["en", "ru", "zh"])
def test_csv_holds_exactly_what_is_shown(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock, lang: str
) -> None:
    ids = [create(forum, lifecycle, f"Measure «{n}», \"quoted\"", submit=n % 3 == 0, now=T0 - n * 15 * DAY)
           for n in range(30)]
    sign_in(client, forum, "kuznetsov", clock.now)
    client.cookies.set(LANG_COOKIE, lang)
    query = {"group": "industry", "page": "2"}
    page = client.get("/proposals", params=query).text
    link = re.search(r'<a href="(/proposals\.csv\?[^"]+)" download>', page)
    assert link
    r = client.get(html.unescape(link.group(1)))
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="proposals-page-2.csv"'
    header, *rows = read_csv(r.content)
    shown = table_rows(page)
    assert len(rows) == len(shown) == 5
    # Same proposals, same order, same texts: number, title, group, state, deadline (+ mark), author.
    for cells, row in zip(shown, rows, strict=True):
        number, title, group, state, deadline, author = cells
        assert number == f"#{row[0]}" and title == row[1] and group == row[2] and state == row[3]
        assert deadline.replace(row[6], "").strip() == (row[4] or "—") and author == row[7]
        assert row[8] == f"{BASE}/proposals/{row[0]}"
    assert [int(r[0]) for r in rows] == ids[4::-1]
    overdue = [r for r in rows if r[6]]
    assert overdue and all(r[5] for r in overdue)  # in review for 45 days of 30: overdue, with a UTC deadline
    assert header[1] == {"en": "Title", "ru": "Название", "zh": "标题"}[lang]

    everything = client.get("/proposals.csv", params={"group": "industry"})
    assert everything.headers["content-disposition"] == 'attachment; filename="proposals.csv"'
    assert [int(r[0]) for r in read_csv(everything.content)[1:]] == ids[::-1]


HOSTILE = [
    '<script>alert("x")</script> & <b>bold</b>',
    "=HYPERLINK(\"http://evil.example\",\"click\")",
    "+1+2",
    "-2+3",
    "@SUM(A1:A2)",
    "'already quoted",
    "Ordinary, with a comma",
]


def test_hostile_titles_are_escaped_and_csv_cells_are_not_formulas(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock
) -> None:
    ids = {create(forum, lifecycle, title): title for title in HOSTILE}
    english(sign_in(client, forum, "kuznetsov", clock.now))
    page = client.get("/proposals").text
    assert "<script>alert" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert [cells[1] for cells in table_rows(page)] == HOSTILE[::-1]
    group = client.get("/groups/industry").text
    assert "<script>alert" not in group and "&lt;script&gt;" in group

    rows = read_csv(client.get("/proposals.csv").content)[1:]
    titles = {int(r[0]): r[1] for r in rows}
    for pid, title in ids.items():
        if title[0] in "=+-@":
            assert titles[pid] == "'" + title
        else:
            assert titles[pid] == title
    for r in rows:
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in r)


def test_navigation_names_my_groups(client: TestClient, forum: Engine, clock: Clock) -> None:
    english(sign_in(client, forum, "kuznetsov", clock.now))  # chairs industry, member of tourism
    page = client.get("/proposals").text
    nav = page.split('<nav class="user"')[1].split("</nav>")[0]
    assert '<a href="/" >' not in nav
    assert '<a href="/proposals" aria-current="page">Proposals</a>' in nav
    assert '<a href="/forum">Forum</a>' in nav
    assert re.findall(r'href="/groups/(\w+)"', nav) == ["industry", "tourism"]
    sign_in(client, forum, "petrov", clock.now)  # a head of region in no group
    nav = client.get("/forum").text.split('<nav class="user"')[1].split("</nav>")[0]
    assert "/groups/" not in nav and '<a href="/forum" aria-current="page">' in nav


def test_list_in_russian_and_chinese(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    make_proposal(forum, lifecycle, state="in_review", title="Agro park")
    sign_in(client, forum, "kuznetsov", clock.now)  # his language: Russian
    page = client.get("/proposals").text
    assert "Предложения 1–1 из 1, сначала новые." in page and "Рассмотрение в рабочей группе" in page
    sign_in(client, forum, "zhao.lei", clock.now)
    client.cookies.delete(LANG_COOKIE)
    page = client.get("/proposals", params={"search": "nothing"}).text
    assert "没有符合筛选条件的提案" in page and "清除筛选" in page


@pytest.mark.parametrize("lang", ["en", "ru", "zh"])
def test_working_groups_are_named_in_the_readers_language(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock, lang: str
) -> None:
    pid = create(forum, lifecycle, "Cold chain terminal", submit=True)
    sign_in(client, forum, "zhao.lei", clock.now)
    client.cookies.set(LANG_COOKIE, lang)
    name = {"en": "Industrial production and agriculture", "ru": "Промышленное производство и сельское хозяйство",
            "zh": "工业生产与农业"}[lang]
    for path in ("/proposals", f"/proposals/{pid}"):
        page = client.get(path)
        assert page.status_code == 200 and name in html.unescape(page.text), path
