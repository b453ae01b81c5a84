"""A proposal's page: text, changes, actions as forms through the lifecycle, the round, progress, timeline; new, edit, remind."""

from __future__ import annotations

import datetime as dt
import html
import re
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.engine import Engine
from sqlmodel import select

from config.settings import Settings
from models import Lifecycle, session_scope
from models.lifecycle import events_of
from models.outbox import Delivery
from models.tables import Event, Proposal, ProposalTextEdit
from models.texts import proposal_create
from notifications.dispatch import dispatch_once
from notifications.render import format_when
from tests.factories import AUTHOR, CHAIR, ONE_HEAD_PER_STATE, PRESIDING_HEAD, T0, create_with_text, load, make_proposal
from tests.notifications.helpers import SmtpServer
from tests.web.conftest import Clock, csrf_of, sign_in
from web.i18n import LANG_COOKIE

DAY = dt.timedelta(days=1)


def as_member(client: TestClient, engine: Engine, handle: str, clock: Clock, lang: str = "en") -> TestClient:
    """``client`` signed in as ``handle``, reading ``lang``."""
    sign_in(client, engine, handle, clock.now)
    client.cookies.set(LANG_COOKIE, lang)
    return client


def text_of(page: str) -> str:
    """The page's text with tags removed and entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def forms_of(page: str, pid: int) -> list[str]:
    """The actions the page offers as forms."""
    return re.findall(rf'<form method="post" action="/proposals/{pid}/actions/(\w+)"', page)


def section(page: str, cls: str) -> str:
    """The page's ``<section class="cls">``."""
    match = re.search(rf'<section class="{cls}".*?</section>', page, re.S)
    assert match, f"no {cls} section"
    return match.group(0)


def when(value: dt.datetime, lang: str, zone: str) -> str:
    """A moment as the page shows it, spaces as ``text_of`` leaves them."""
    return " ".join(format_when(value, lang, ZoneInfo(zone)).split())


def post_action(
    client: TestClient, engine: Engine, pid: int, action: str, *, version: int | None = None, **fields: str
) -> Response:
    """Submit an action form as the page does: its CSRF token, and the version it was shown at (default: the current one)."""
    page = client.get(f"/proposals/{pid}").text
    data = {"csrf_token": csrf_of(page), "expected_version": str(version if version is not None else load(engine, pid).version)}
    return client.post(f"/proposals/{pid}/actions/{action}", data=data | fields)


def event_count(engine: Engine, pid: int) -> int:
    """Events recorded for the proposal."""
    with session_scope(engine) as s:
        return len(events_of(s, pid))


# ---------------------------------------------------------------------- the page in each state
def test_a_draft_for_its_author(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    with session_scope(forum) as s:
        body = "First line.\n\nSecond <b>para</b>."
        data = proposal_create(group="industry", author=AUTHOR, title="Agro park", summary="Short.", body=body)
        pid = lifecycle.create_proposal(session=s, proposal_in=data, now=T0).id
    assert pid is not None
    as_member(client, forum, AUTHOR, clock)
    r = client.get(f"/proposals/{pid}")
    assert r.status_code == 200
    page = r.text
    assert forms_of(page, pid) == ["submit", "withdraw"]
    assert f'href="/proposals/{pid}/edit"' in page
    assert '<div class="body">First line.\n\nSecond &lt;b&gt;para&lt;/b&gt;.</div>' in page  # preformatted, escaped
    words = text_of(page)
    assert "#1 Agro park" in words and "State: Drafted" in words and "Version 1, written by 赵磊" in words
    assert "Changes between versions" not in words and "Endorsement round" not in words  # one version, no round yet
    assert '<section class="progress"' not in page
    assert "Remind those who have not acted" not in words  # the author does not send reminders
    timeline = text_of(section(page, "timeline"))
    assert f"Created 赵磊 {when(T0, 'en', 'Asia/Shanghai')} text version 1" in timeline


def test_in_review_the_chair_has_the_buttons_and_others_none(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock
) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    as_member(client, forum, CHAIR, clock)
    page = client.get(f"/proposals/{pid}").text
    assert forms_of(page, pid) == ["recommend", "return", "reject"]
    # return needs a comment, recommend accepts one
    assert re.search(r'<textarea id="comment-return" name="comment" rows="3" maxlength="20000" required', page)
    assert re.search(r'<textarea id="comment-recommend" name="comment" rows="3" maxlength="20000">', page)
    assert "/edit" not in page  # the chair does not edit the author's text
    assert "Nobody else must act on this proposal now." in text_of(page)  # the chair is the one to act
    for handle in (AUTHOR, "sharma.anil", PRESIDING_HEAD):
        as_member(client, forum, handle, clock)
        page = client.get(f"/proposals/{pid}").text
        assert forms_of(page, pid) == (["withdraw"] if handle == AUTHOR else []), handle
        assert "Due:" in text_of(page)


def test_the_round_as_a_board_of_member_states(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    at = T0 + dt.timedelta(hours=2)
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "endorse", PRESIDING_HEAD, now=at)
        lifecycle.apply(s, pid, "endorse", "deshmukh", now=at)
    as_member(client, forum, "sharma.anil", clock)  # not a head: the board, no buttons
    page = client.get(f"/proposals/{pid}").text
    assert forms_of(page, pid) == []
    board = section(page, "board")
    words = text_of(board)
    assert "Endorsement round 1" in words and "On text version 1." in words
    assert f"Ends: {when(T0 + 21 * DAY, 'en', 'Asia/Kolkata')}" in words
    assert "2 of 8 member states endorsed, 0 objected." in words
    rows = re.findall(r'<li class="state-row is-(\w+)">\s*<span class="country">([^<]+)</span>', board)
    assert rows == [("waiting", "China"), ("endorsed", "India"), ("waiting", "Kazakhstan"), ("waiting", "Kyrgyzstan"),
                    ("waiting", "Pakistan"), ("endorsed", "Russian Federation"), ("waiting", "Tajikistan"),
                    ("waiting", "Uzbekistan")]
    assert f"Алексей Петров, Chelyabinskaya oblast' (RU-CHE): {when(at, 'en', 'Asia/Kolkata')}" in words
    as_member(client, forum, "wang.jianguo", clock, lang="zh")
    page = client.get(f"/proposals/{pid}").text
    assert forms_of(page, pid) == ["endorse", "object"]
    assert "中国" in text_of(section(page, "board"))  # member states by their names in the reader's language

    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "object", "khan.ayesha", comment="Budget unclear", now=at)
    as_member(client, forum, "sharma.anil", clock)
    board = section(client.get(f"/proposals/{pid}").text, "board")
    assert "Endorsement round 1 (closed)" in text_of(board) and "Ends:" not in board
    assert '<li class="state-row is-objected">\n      <span class="country">Pakistan</span>' in board
    assert '<li class="state-row is-no_decision">\n      <span class="country">China</span>' in board


def test_endorsed_the_presiding_head_approves(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    pid = make_proposal(forum, lifecycle, state="endorsed")
    as_member(client, forum, PRESIDING_HEAD, clock)
    page = client.get(f"/proposals/{pid}").text
    assert forms_of(page, pid) == ["approve", "refer_back"]
    words = text_of(page)
    assert "State: Endorsed, awaiting approval by the presiding region" in words
    assert "8 of 8 member states endorsed, 0 objected." in words and "Endorsement round 1 (closed)" in words
    timeline = text_of(section(page, "timeline"))
    assert "Endorsed by consensus Endorsement round of the heads of regions → Endorsed" in timeline
    assert "For Xinjiang Uygur Zizhiqu (CN-XJ)" in timeline


def test_implementing_progress_as_a_bar_with_its_reports(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock
) -> None:
    pid = make_proposal(forum, lifecycle, state="implementing")
    as_member(client, forum, AUTHOR, clock)
    page = client.get(f"/proposals/{pid}").text
    assert forms_of(page, pid) == ["report_progress", "complete"]
    assert '<progress id="progress-bar" max="100" value="0">' in page and "No progress report yet." in page
    assert re.search(r'<input id="percent-report_progress" name="percent" type="number" min="0" max="100"', page)
    clock.advance(hours=3)
    r = post_action(client, forum, pid, "report_progress", percent="40", comment="Site chosen.\r\nContracts drafted.")
    assert r.status_code == 303 and r.headers["location"] == f"/proposals/{pid}?done=report_progress"
    page = client.get(r.headers["location"]).text
    assert "Done: Report progress." in text_of(page)
    progress = section(page, "progress")
    assert '<progress id="progress-bar" max="100" value="40">' in progress and "40% done" in text_of(progress)
    assert '<p class="note">Site chosen.\nContracts drafted.</p>' in progress  # the browser's CRLF stored as LF
    assert "赵磊" in text_of(progress)
    assert "Progress: 40%" in text_of(section(page, "timeline"))
    assert load(forum, pid).percent == 40


# ---------------------------------------------------------------------- actions
def test_an_action_goes_through_the_lifecycle_and_comes_back(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock
) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    as_member(client, forum, CHAIR, clock)
    r = post_action(client, forum, pid, "return", comment="Add the budget, please.")
    assert r.status_code == 303 and r.headers["location"] == f"/proposals/{pid}?done=return"
    p = load(forum, pid)
    assert p.state == "drafted"
    with session_scope(forum) as s:
        last = events_of(s, pid)[-1]
    assert (last.action, last.actor, last.comment) == ("return", CHAIR, "Add the budget, please.")
    page = client.get(r.headers["location"]).text
    assert "Done: Return to the author." in text_of(page)
    timeline = text_of(section(page, "timeline"))
    assert "Return to the author In review by the working group → Drafted Николай Кузнецов" in timeline
    assert "Add the budget, please." in timeline


@pytest.mark.parametrize(
    ("state", "actor", "action", "fields", "status", "message"),
    [
        ("drafted", "sharma.anil", "submit", {}, 403,
         "Only the author (赵磊) may take the action “Submit to the working group” on this proposal."),
        ("drafted", AUTHOR, "recommend", {}, 409,
         "“Recommend for endorsement” is not possible while the proposal is “Drafted”."),
        ("in_review", CHAIR, "return", {"comment": "  "}, 422, "“Return to the author” needs a comment."),
        ("in_review", CHAIR, "frobnicate", {"comment": "x"}, 422, "There is no action “frobnicate”."),
        ("implementing", AUTHOR, "report_progress", {"percent": "120", "comment": "Too far"}, 422,
         "“Report progress” needs the progress: a whole number from 0 to 100."),
        ("implementing", AUTHOR, "report_progress", {"percent": "forty", "comment": "Words"}, 422,
         "Enter the progress as a whole number from 0 to 100."),
    ],
)
def test_refusals_show_the_lifecycles_message_and_keep_the_input(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock,
    state: str, actor: str, action: str, fields: dict[str, str], status: int, message: str,
) -> None:
    pid = make_proposal(forum, lifecycle, state=state)
    before = (load(forum, pid).version, event_count(forum, pid))
    as_member(client, forum, actor, clock)
    r = post_action(client, forum, pid, action, **fields)
    assert r.status_code == status
    assert message.format(pid=pid) in text_of(r.text)
    assert '<p class="error" role="alert">' in r.text
    if fields.get("comment", "").strip() and action in forms_of(r.text, pid):
        assert f">\n{fields['comment']}</textarea>" in r.text  # what was typed is still there
    if "percent" in fields:
        assert f'value="{fields["percent"]}"' in r.text
    assert (load(forum, pid).version, event_count(forum, pid)) == before


def test_a_stale_form_is_refused_with_409_and_the_fresh_page(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock
) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    as_member(client, forum, CHAIR, clock)
    shown = load(forum, pid).version
    with session_scope(forum) as s:  # meanwhile the author withdraws it
        lifecycle.apply(s, pid, "withdraw", AUTHOR, now=T0)
    r = post_action(client, forum, pid, "reject", version=shown, comment="Out of scope")
    assert r.status_code == 409
    assert f"Someone else changed proposal {pid} since you read it. Reload it and try again." in text_of(r.text)
    assert forms_of(r.text, pid) == [] and load(forum, pid).state == "withdrawn"

    other = make_proposal(forum, lifecycle, state="in_review")
    shown = load(forum, other).version
    with session_scope(forum) as s:
        lifecycle.remind_now(s, other, PRESIDING_HEAD, now=T0)  # a change that leaves the chair's actions possible
    r = post_action(client, forum, other, "return", version=shown, comment="Add the budget")
    assert r.status_code == 409 and "Someone else changed proposal" in text_of(r.text)
    assert ">\nAdd the budget</textarea>" in r.text  # kept, and the form now carries the version just shown
    assert f'name="expected_version" value="{shown + 1}"' in r.text
    r = client.post(f"/proposals/{other}/actions/return",
                    data={"csrf_token": csrf_of(r.text), "expected_version": str(shown + 1), "comment": "Add the budget"})
    assert r.status_code == 303 and load(forum, other).state == "drafted"


def test_an_action_without_the_version_or_the_csrf_token_is_refused(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock
) -> None:
    pid = make_proposal(forum, lifecycle)
    as_member(client, forum, AUTHOR, clock)
    page = client.get(f"/proposals/{pid}").text
    r = client.post(f"/proposals/{pid}/actions/submit", data={"expected_version": "1"})
    assert r.status_code == 403 and "This form has expired" in r.text
    r = client.post(f"/proposals/{pid}/actions/submit", data={"expected_version": "1", "csrf_token": "x" * 43})
    assert r.status_code == 403
    r = client.post(f"/proposals/{pid}/actions/submit", data={"csrf_token": csrf_of(page)})
    assert r.status_code == 422 and "Reload the page" in r.text
    r = client.post(f"/proposals/{pid}/remind", data={"expected_version": "1"})
    assert r.status_code == 403
    assert load(forum, pid).state == "drafted" and event_count(forum, pid) == 1


def test_hostile_text_is_shown_escaped(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    hostile = "<script>alert(1)</script>"
    with session_scope(forum) as s:
        body = f'"><img src=x onerror=alert(1)>{hostile}'
        data = proposal_create(group="industry", author=AUTHOR, title=hostile, summary=f"{hostile} s", body=body)
        pid = lifecycle.create_proposal(session=s, proposal_in=data, now=T0).id
    assert pid is not None
    with session_scope(forum) as s:
        lifecycle.edit(s, pid, AUTHOR, ProposalTextEdit(body=f"{hostile} changed"), now=T0)
    as_member(client, forum, CHAIR, clock)
    clock.advance(minutes=1)
    with session_scope(forum) as s:
        lifecycle.apply(s, pid, "submit", AUTHOR, comment=hostile, now=clock.now)
    for url in (f"/proposals/{pid}", f"/proposals/{pid}/actions/return", f"/proposals/{pid}?from=1&to=2"):
        page = client.get(url).text
        assert "<script>alert" not in page and "<img src=x" not in page, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, url


def test_unknown_proposals_are_404(client: TestClient, forum: Engine, clock: Clock) -> None:
    as_member(client, forum, AUTHOR, clock)
    for path in ("/proposals/999", "/proposals/0", f"/proposals/{2**64 + 1}", "/proposals/99999999999999999999999999",
                 "/proposals/abc", "/proposals/999/actions/submit", "/proposals/999/edit"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "Page not found" in r.text
    page = client.get("/").text
    r = client.post(f"/proposals/{2**64}/actions/submit", data={"csrf_token": csrf_of(page), "expected_version": "1"})
    assert r.status_code == 404


def test_the_page_needs_a_signed_in_member(client: TestClient, forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle)
    r = client.get(f"/proposals/{pid}")
    assert r.status_code == 303 and r.headers["location"] == f"/sign-in?next=%2Fproposals%2F{pid}"


# ---------------------------------------------------------------------- the confirmation page of mail links
def test_a_mail_link_only_asks_to_confirm(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed", title="Joint <agro> park")
    before = (load(forum, pid).version, event_count(forum, pid))
    as_member(client, forum, "deshmukh", clock)
    for _ in range(2):  # opened twice, as a mail scanner and then the reader do
        r = client.get(f"/proposals/{pid}/actions/endorse")
        assert r.status_code == 200
    assert (load(forum, pid).version, event_count(forum, pid)) == before
    words = text_of(r.text)
    assert "Endorse for own region" in words and f"#{pid} Joint <agro> park" in words and "Nothing has been done yet" in words
    assert forms_of(r.text, pid) == ["endorse"]
    r = client.post(f"/proposals/{pid}/actions/endorse", data={"csrf_token": csrf_of(r.text), "expected_version": str(before[0])})
    assert r.status_code == 303
    with session_scope(forum) as s:
        assert events_of(s, pid)[-1].actor == "deshmukh"
    r = client.get(f"/proposals/{pid}/actions/endorse")  # the link again, after acting
    assert r.status_code == 403
    assert "You have already decided in this endorsement round (“Endorse for own region”)." in text_of(r.text)
    assert forms_of(r.text, pid) == []
    assert client.get(f"/proposals/{pid}/actions/approve").status_code == 409  # not in this state
    assert client.get(f"/proposals/{pid}/actions/nothing").status_code == 404
    assert client.get(f"/proposals/{pid}/actions/edit").status_code == 404


# ---------------------------------------------------------------------- differences between versions
def test_changes_between_versions_word_by_word(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    with session_scope(forum) as s:
        data = proposal_create(group="industry", author=AUTHOR, title="Agro park", body="The park opens in May.\nBudget: none.")
        pid = lifecycle.create_proposal(session=s, proposal_in=data, now=T0).id
    assert pid is not None
    for body in ("The park opens in June.\nBudget: none.", "The park opens in June.\nBudget: 2 million."):
        with session_scope(forum) as s:
            lifecycle.edit(s, pid, AUTHOR, ProposalTextEdit(body=body), now=T0)
    as_member(client, forum, CHAIR, clock)
    changes = section(client.get(f"/proposals/{pid}").text, "changes")  # the last two versions
    assert "From version 2 to version 3" in text_of(changes)
    assert '<div class="diff diff-body">The park opens in June.\nBudget: <del>none</del><ins>2 million</ins>.</div>' in changes
    assert "diff-title" not in changes  # fields that did not change are left out
    assert re.search(r'<select id="from" name="from">.*<option value="2" selected>2</option>', changes, re.S)
    changes = section(client.get(f"/proposals/{pid}?from=1&to=3").text, "changes")
    assert "<del>May</del><ins>June</ins>" in changes and "<del>none</del><ins>2 million</ins>" in changes
    changes = section(client.get(f"/proposals/{pid}?from=2&to=2").text, "changes")
    assert "The two versions are the same." in changes
    for query in ("from=1&to=9", "from=x&to=2", "from=0"):
        r = client.get(f"/proposals/{pid}?{query}")
        assert r.status_code == 422, query
        assert '<p class="error" role="alert">' in section(r.text, "changes")
        assert '<section class="text"' in r.text  # the rest of the page is there
    beyond = text_of(client.get(f"/proposals/{pid}?from=1&to=9").text)
    assert "There is no such text version: versions are numbered 1 to 3." in beyond


# ---------------------------------------------------------------------- new and edit
def test_new_proposal_in_one_of_my_groups(client: TestClient, forum: Engine, clock: Clock) -> None:
    as_member(client, forum, "kuznetsov", clock)
    page = client.get("/proposals/new").text
    assert re.findall(r'<option value="(\w*)"', page) == ["", "industry", "tourism"]  # his two groups
    token = csrf_of(page)
    r = client.post("/proposals/new", data={"csrf_token": token, "group": "industry", "title": "  ", "summary": "Kept",
                                            "body": "Line one\r\nLine two"})
    assert r.status_code == 422
    assert re.search(r'<input id="title" name="title" type="text" required maxlength="300" value="  " aria-invalid', r.text)
    assert '<p class="error" id="title-error">This must not be empty.</p>' in r.text
    assert ">\nKept</textarea>" in r.text and ">\nLine one\nLine two</textarea>" in r.text
    assert '<option value="industry" selected>' in r.text
    r = client.post("/proposals/new", data={"csrf_token": token, "group": "", "title": "x" * 301, "body": "b"})
    assert r.status_code == 422 and 'id="group-error"' in r.text and "At most 300 characters." in r.text
    r = client.post("/proposals/new", data={"csrf_token": token, "group": "trade", "title": "Not my group"})
    assert r.status_code == 403
    assert "You are not a member of the working group Trade and investment and may not propose there." in text_of(r.text)
    assert 'value="Not my group"' in r.text
    with session_scope(forum) as s:
        assert s.exec(select(Proposal)).all() == []
    r = client.post("/proposals/new", data={"csrf_token": token, "group": "tourism", "title": "Silk Road <tours>",
                                            "summary": "S", "body": "B\r\nC"})
    assert r.status_code == 303
    pid = int(r.headers["location"].split("/")[2].split("?")[0])
    assert r.headers["location"] == f"/proposals/{pid}?done=create"
    p = load(forum, pid)
    assert (p.group, p.author, p.title, p.body, p.state) == ("tourism", "kuznetsov", "Silk Road <tours>", "B\nC", "drafted")
    assert "The proposal was created as a draft." in text_of(client.get(r.headers["location"]).text)


def test_someone_in_no_group_is_told_so(client: TestClient, forum: Engine, clock: Clock) -> None:
    as_member(client, forum, "deshmukh", clock)
    page = client.get("/proposals/new").text
    assert "You are not a member of any working group" in page and 'name="title"' not in page


def test_edit_a_draft(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    with session_scope(forum) as s:
        data = proposal_create(group="industry", author=AUTHOR, title="Agro park", summary="S", body="One\nTwo")
        pid = lifecycle.create_proposal(session=s, proposal_in=data, now=T0).id
    assert pid is not None
    as_member(client, forum, AUTHOR, clock)
    form = client.get(f"/proposals/{pid}/edit").text
    assert 'value="Agro park"' in form and ">\nOne\nTwo</textarea>" in form and 'name="expected_version" value="1"' in form
    token = csrf_of(form)
    same = {"csrf_token": token, "expected_version": "1", "title": "Agro  park", "summary": "S", "body": "One\r\nTwo"}
    r = client.post(f"/proposals/{pid}/edit", data=same)  # the browser's CRLF and extra spaces change nothing
    assert r.status_code == 303 and r.headers["location"] == f"/proposals/{pid}?done=unchanged"
    assert "Nothing changed: the text is the same as the current version." in text_of(client.get(r.headers["location"]).text)
    assert load(forum, pid).text_version == 1
    r = client.post(f"/proposals/{pid}/edit", data=same | {"title": "", "body": "Kept body"})
    assert r.status_code == 422 and '<p class="error" id="title-error">This must not be empty.</p>' in r.text
    assert ">\nKept body</textarea>" in r.text
    r = client.post(f"/proposals/{pid}/edit", data=same | {"body": "One\nTwo\nThree"})
    assert r.status_code == 303 and r.headers["location"] == f"/proposals/{pid}?done=edit"
    p = load(forum, pid)
    assert (p.text_version, p.body, p.version) == (2, "One\nTwo\nThree", 2)
    page = client.get(r.headers["location"]).text
    assert "The new text version was saved." in text_of(page) and "Version 2, written by 赵磊" in text_of(page)
    assert "Two<ins>\nThree</ins></div>" in section(page, "changes")
    r = client.post(f"/proposals/{pid}/edit", data=same | {"body": "Stale"})  # version 1 was shown
    assert r.status_code == 409 and "Someone else changed proposal" in text_of(r.text) and ">\nStale</textarea>" in r.text
    assert load(forum, pid).body == "One\nTwo\nThree"


def test_only_the_author_edits_and_only_a_draft(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    pid = make_proposal(forum, lifecycle)
    as_member(client, forum, CHAIR, clock)
    r = client.get(f"/proposals/{pid}/edit")
    assert r.status_code == 403 and "Only the author (赵磊) may edit the text of this proposal." in text_of(r.text)
    r = client.post(f"/proposals/{pid}/edit", data={"csrf_token": csrf_of(r.text), "expected_version": "1", "title": "Mine"})
    assert r.status_code == 403 and load(forum, pid).title == "Joint agro-industrial park"
    submitted = make_proposal(forum, lifecycle, state="in_review")
    as_member(client, forum, AUTHOR, clock)
    r = client.get(f"/proposals/{submitted}/edit")
    assert r.status_code == 409
    assert "Only a draft can be edited; this proposal is “In review by the working group”." in text_of(r.text)


# ---------------------------------------------------------------------- remind those who have not acted
def remind_form(page: str, pid: int) -> dict[str, str]:
    """The fields of the page's remind form."""
    assert f'action="/proposals/{pid}/remind"' in page, "no remind button"
    version = re.search(r'/remind">\s*<input[^>]*>\s*<input type="hidden" name="expected_version" value="(\d+)"', page)
    assert version
    return {"csrf_token": csrf_of(page), "expected_version": version.group(1)}


def test_remind_once_a_day_and_the_mail_reaches_those_who_must_act(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock, smtp_server: SmtpServer, web_settings: Settings
) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    with session_scope(forum) as s:
        for head in ONE_HEAD_PER_STATE[:6]:  # every state has endorsed but Tajikistan and Uzbekistan
            lifecycle.apply(s, pid, "endorse", head, now=T0)
    as_member(client, forum, AUTHOR, clock)
    assert f"/proposals/{pid}/remind" not in client.get(f"/proposals/{pid}").text  # the author may not
    as_member(client, forum, CHAIR, clock)
    page = client.get(f"/proposals/{pid}").text
    assert "A reminder goes by mail to: Шерзод Каримов, Фирдавс Рахимов, Манижа Саидова, Дилноза Юсупова." in text_of(page)
    clock.advance(hours=1)
    r = client.post(f"/proposals/{pid}/remind", data=remind_form(page, pid))
    assert r.status_code == 303 and r.headers["location"] == f"/proposals/{pid}?done=remind"
    page = client.get(r.headers["location"]).text
    words = text_of(page)
    assert "The reminder was sent to those who have not acted." in words
    sent = when(clock.now, "en", "Asia/Yekaterinburg")
    assert f"A reminder was sent today by Николай Кузнецов ({sent})." in words
    assert f"/proposals/{pid}/remind" not in page
    timeline = text_of(section(page, "timeline"))
    recipients = "Шерзод Каримов, Фирдавс Рахимов, Манижа Саидова, Дилноза Юсупова"
    assert f"Reminder Николай Кузнецов {sent} text version 1 Sent to: {recipients}" in timeline

    as_member(client, forum, PRESIDING_HEAD, clock)  # the presiding head, the same day
    page = client.get(f"/proposals/{pid}").text
    assert f"/proposals/{pid}/remind" not in page
    version = str(load(forum, pid).version)
    r = client.post(f"/proposals/{pid}/remind", data={"csrf_token": csrf_of(page), "expected_version": version})
    assert r.status_code == 409 and "Николай Кузнецов already sent a reminder on this proposal today (" in text_of(r.text)
    with session_scope(forum) as s:
        reminders = [e for e in events_of(s, pid) if e.action == "remind"]
    assert len(reminders) == 1

    settings = Settings(data_dir=web_settings.data_dir, base_url=web_settings.base_url, smtp_port=smtp_server.port)
    dispatch_once(forum, settings, lifecycle, now=clock.now)
    with session_scope(forum) as s:
        rows = s.exec(select(Delivery).where(Delivery.event_id == reminders[0].id)).all()
        assert sorted(d.recipient for d in rows) == ["karimov", "rakhimov", "saidova", "yusupova"]
        assert all(d.critical and d.status == "sent" for d in rows)
    mail = [m.message for m in smtp_server.to("s.karimov@example.org") if "Напоминание" in str(m.message["subject"])]
    assert len(mail) == 1 and f"Напоминание: №{pid}" in str(mail[0]["subject"])
    body = mail[0].get_body(("plain",))
    assert body is not None and "Николай Кузнецов просит вас принять решение." in body.get_content()
    reminded = sorted(m.rcpt_tos[0] for m in smtp_server.received if "Напоминание" in str(m.message["subject"]))
    assert reminded == ["d.yusupova@example.org", "f.rakhimov@example.org", "m.saidova@example.org", "s.karimov@example.org"]

    clock.advance(days=1)
    as_member(client, forum, PRESIDING_HEAD, clock)
    page = client.get(f"/proposals/{pid}").text
    assert client.post(f"/proposals/{pid}/remind", data=remind_form(page, pid)).status_code == 303  # a new day


def test_remind_refusals(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    as_member(client, forum, AUTHOR, clock)
    page = client.get(f"/proposals/{pid}").text
    r = client.post(f"/proposals/{pid}/remind", data={"csrf_token": csrf_of(page), "expected_version": "3"})
    assert r.status_code == 403 and "may send a reminder on this proposal." in text_of(r.text)
    as_member(client, forum, CHAIR, clock)
    page = client.get(f"/proposals/{pid}").text
    r = client.post(f"/proposals/{pid}/remind", data={"csrf_token": csrf_of(page), "expected_version": "2"})
    assert r.status_code == 409 and "Someone else changed proposal" in text_of(r.text)
    in_review = make_proposal(forum, lifecycle, state="in_review")
    page = client.get(f"/proposals/{in_review}").text
    r = client.post(f"/proposals/{in_review}/remind", data={"csrf_token": csrf_of(page), "expected_version": "2"})
    assert r.status_code == 409 and "there is nobody to remind" in text_of(r.text)
    with session_scope(forum) as s:
        assert s.exec(select(Event).where(Event.action == "remind")).all() == []


# ---------------------------------------------------------------------- languages
def test_the_page_in_russian_and_chinese(client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock) -> None:
    pid = make_proposal(forum, lifecycle, state="reviewed")
    as_member(client, forum, PRESIDING_HEAD, clock, lang="ru")
    words = text_of(client.get(f"/proposals/{pid}").text)
    assert "Что вы можете сделать сейчас" in words and "Раунд одобрения 1" in words and "Российская Федерация" in words
    assert "Хронология" in words and "Напомнить тем, кто ещё не принял решение" in words
    as_member(client, forum, "wang.jianguo", clock, lang="zh")
    words = text_of(client.get(f"/proposals/{pid}").text)
    assert "您现在可以做的事" in words and "第 1 轮认可" in words and "时间线" in words and "俄罗斯" in words


@pytest.mark.parametrize(
    ("lang", "actor", "action", "fields", "status", "message"),
    [
        ("ru", CHAIR, "return", {"comment": " "}, 422, "Для действия «Возврат на доработку» нужен комментарий."),
        ("zh", CHAIR, "return", {"comment": " "}, 422, "“退回修改”需要填写评论。"),
        ("ru", "sharma.anil", "withdraw", {}, 403,
         "Действие «Отзыв» над этим предложением может выполнить только автор (赵磊)."),
        ("zh", AUTHOR, "recommend", {}, 403,
         "只有工作组“工业生产与农业”副组长（Сауле Нурланова，因提案由组长撰写）可以对本提案执行“推荐认可”。"),
        ("ru", CHAIR, "approve", {}, 409,
         "«Утверждение» невозможно, пока предложение на этапе «Рассмотрение в рабочей группе»."),
    ],
)
def test_refusals_are_in_the_readers_language_with_names_not_handles_or_flags(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock,
    lang: str, actor: str, action: str, fields: dict[str, str], status: int, message: str,
) -> None:
    if action == "recommend":  # the chair's own proposal: the deputy chair recommends it
        pid = create_with_text(forum, lifecycle, "The chair's own", author=CHAIR, submit=True)
    else:
        pid = make_proposal(forum, lifecycle, state="in_review")
    as_member(client, forum, actor, clock, lang)
    r = post_action(client, forum, pid, action, **fields)
    assert r.status_code == status
    error = re.search(r'<p class="error" role="alert">(.*?)</p>', r.text, re.S)
    assert error and text_of(error.group(1)) == message
    for cli_word in ("--comment", "--percent", "kuznetsov", "zhao.lei", "'", "requires"):
        assert cli_word not in error.group(1)
    confirm = client.get(f"/proposals/{pid}/actions/{action}")  # the mail link's confirmation page says it too
    if status != 422:
        assert confirm.status_code == status and message in text_of(confirm.text)


@pytest.mark.parametrize(
    ("lang", "query", "message"),
    [
        ("ru", "state=bogus", "Этапа «bogus» нет."),
        ("zh", "group=nowhere", "没有工作组“nowhere”。"),
        ("ru", "page=7", "Страницы 7 нет: всего страниц в списке — 1."),
        ("zh", "search=" + "+".join(["w"] * 11), "搜索内容最多 10 个词。"),
    ],
)
def test_bad_list_filters_are_explained_in_the_readers_language(
    client: TestClient, forum: Engine, clock: Clock, lang: str, query: str, message: str,
) -> None:
    as_member(client, forum, CHAIR, clock, lang)
    r = client.get(f"/proposals?{query}")
    assert r.status_code in (404, 422) and message in text_of(r.text)


def test_form_problems_are_in_the_readers_language(client: TestClient, forum: Engine, clock: Clock) -> None:
    as_member(client, forum, CHAIR, clock, "ru")
    token = csrf_of(client.get("/proposals/new").text)
    r = client.post("/proposals/new", data={"csrf_token": token, "group": "industry", "title": "x" * 301})
    assert r.status_code == 422 and '<p class="error" id="title-error">Не больше 300 символов.</p>' in r.text
    r = client.post("/proposals/new", data={"csrf_token": token, "group": "industry", "title": " "})
    assert r.status_code == 422 and '<p class="error" id="title-error">Это поле не может быть пустым.</p>' in r.text


def textarea_value(page: str, name: str) -> str:
    """What a browser puts in the textarea ``name`` (its id): its text, less the one newline right after the tag (HTML)."""
    match = re.search(rf'<textarea id="{name}"[^>]*>(.*?)</textarea>', page, re.S)
    assert match, name
    return html.unescape(match.group(1)).removeprefix("\n")


def test_an_unchanged_form_is_sent_back_unchanged_even_starting_with_a_blank_line(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock,
) -> None:
    body, summary = "\n\nIndented start\n  and <b>markup</b> & more\n", "\nSummary after a blank line"
    pid = create_with_text(forum, lifecycle, "Blank lines", summary=summary, body=body)
    as_member(client, forum, AUTHOR, clock)
    form = client.get(f"/proposals/{pid}/edit").text
    assert (textarea_value(form, "body"), textarea_value(form, "summary")) == (body, summary)
    sent = {"csrf_token": csrf_of(form), "expected_version": "1", "title": "Blank lines"}
    shown = {"summary": textarea_value(form, "summary"), "body": textarea_value(form, "body")}
    r = client.post(f"/proposals/{pid}/edit", data=sent | shown)
    assert r.status_code == 303 and r.headers["location"] == f"/proposals/{pid}?done=unchanged"
    assert load(forum, pid).text_version == 1
    # A comment typed with a leading blank line and refused is given back as typed.
    in_review = make_proposal(forum, lifecycle, state="in_review")
    as_member(client, forum, CHAIR, clock)
    stale = load(forum, in_review).version - 1
    r = post_action(client, forum, in_review, "return", version=stale, comment="\nFirst line after a blank one")
    assert r.status_code == 409 and textarea_value(r.text, "comment-return") == "\nFirst line after a blank one"


def test_a_comment_whose_action_went_away_meanwhile_is_not_lost(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock,
) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    as_member(client, forum, CHAIR, clock, "ru")
    shown = load(forum, pid).version
    with session_scope(forum) as s:  # while the chair types, the author withdraws the proposal
        lifecycle.apply(s, pid, "withdraw", AUTHOR, now=T0 + dt.timedelta(minutes=1))
    clock.advance(minutes=2)
    typed = "Верните с бюджетом <b>и сроками</b>,\nпожалуйста."
    r = post_action(client, forum, pid, "return", version=shown, comment=typed)
    assert r.status_code == 409 and "return" not in forms_of(r.text, pid)
    assert "Ваш комментарий не отправлен" in text_of(r.text)
    assert textarea_value(r.text, "unsent-comment") == typed
    # A refusal that keeps the form shows the comment in it, not twice.
    other = make_proposal(forum, lifecycle, state="in_review")
    r = post_action(client, forum, other, "return", version=load(forum, other).version - 1, comment="Stale")
    assert r.status_code == 409 and "unsent-comment" not in r.text and textarea_value(r.text, "comment-return") == "Stale"


def test_what_was_typed_survives_a_session_that_ended_or_a_form_that_expired(
    client: TestClient, forum: Engine, lifecycle: Lifecycle, clock: Clock,
) -> None:
    pid = make_proposal(forum, lifecycle, state="in_review")
    as_member(client, forum, CHAIR, clock)
    page = f"/proposals/{pid}"
    form = {"csrf_token": csrf_of(client.get(page).text), "expected_version": str(load(forum, pid).version)}
    typed = "A long comment, typed over lunch.\nSecond line."
    clock.advance(hours=13)  # the 12-hour session ended meanwhile
    r = client.post(f"{page}/actions/return", data=form | {"comment": typed}, headers={"Referer": f"http://testserver{page}"})
    assert r.status_code == 403 and "Your session has ended" in text_of(r.text)
    assert textarea_value(r.text, "kept-1") == typed
    assert f'href="/sign-in?next=%2Fproposals%2F{pid}"' in r.text
    assert load(forum, pid).state == "in_review"
    # Signed in again, a form of the old session has expired: its text is kept too.
    as_member(client, forum, CHAIR, clock)
    r = client.post(f"/proposals/{pid}/edit", data=form | {"title": "T", "body": "Body\r\nkept"})
    assert r.status_code == 403 and "This form has expired" in text_of(r.text) and "Sign in again" not in r.text
    assert (textarea_value(r.text, "kept-1"), textarea_value(r.text, "kept-2")) == ("T", "Body\nkept")


@pytest.mark.parametrize(
    ("query", "names"), [("page=abc", "page"), ("overdue=maybe", "overdue"), ("search=" + "x" * 801, "search")]
)
def test_a_bad_value_in_a_pages_address_is_named(client: TestClient, forum: Engine, clock: Clock, query: str, names: str) -> None:
    as_member(client, forum, CHAIR, clock, "ru")
    r = client.get(f"/proposals?{query}")
    assert r.status_code == 422 and f"В адресе страницы есть недопустимое значение: {names}." in text_of(r.text)
