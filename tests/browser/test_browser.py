"""In a real browser: sign in from the mailed link, see My actions, switch languages, sign out; axe-core on every page."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.auth import end_session
from models.db import session_scope
from tests.browser.conftest import Site, fresh_page
from tests.factories import ONE_HEAD_PER_STATE
from web.i18n import Labels, Ui, translations
from web.security import SESSION_COOKIE
from web.state import wall_clock

pytestmark = pytest.mark.browser

HEAD = "p.deshmukh@example.org"  # Priya Deshmukh, head of region IN-MH, reads English
# axe-core's WCAG 2.1 A and AA rules, and its best practices (landmarks, headings).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
BLOCKING = {"serious", "critical"}


def accessibility_problems(page: Any) -> list[str]:
    """axe-core (vendored by axe-playwright-python, no network) on the page: its serious and critical violations."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]})
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"] if v["impact"] in BLOCKING
    ]


def visit(page: Any, checked: dict[str, list[str]], name: str) -> None:
    """Record the accessibility problems of the page shown now under ``name``."""
    page.wait_for_load_state("load")
    checked[name] = accessibility_problems(page)


def cjk_glyphs_render(page: Any, text: str) -> bool:
    """Whether ``text`` draws differently from characters no font has (missing glyphs all draw as the same box)."""
    return bool(page.evaluate(
        """text => {
            const draw = s => {
                const c = document.createElement('canvas'); c.width = 200; c.height = 40;
                const g = c.getContext('2d'); g.font = '24px sans-serif'; g.fillText(s, 4, 30);
                return Array.from(g.getImageData(0, 0, 200, 40).data).join(',');
            };
            const missing = String.fromCodePoint(0x10FFFD).repeat([...text].length);
            return draw(text) !== draw(missing);
        }""",
        text,
    ))


def test_sign_in_from_the_mail_see_my_actions_switch_languages_sign_out(site: Site, page: Any, tmp_path: Path) -> None:
    checked: dict[str, list[str]] = {}
    ru, zh = translations("ru").gettext, translations("zh").gettext

    page.goto(f"{site.url}/")
    assert page.url == f"{site.url}/sign-in"  # not signed in: sent to sign in
    assert page.locator("html").get_attribute("lang") == "en"
    visit(page, checked, "sign-in")
    page.get_by_label("Mail address").fill(HEAD)
    page.get_by_role("button", name="Mail me a sign-in link").click()
    page.wait_for_url(f"{site.url}/sign-in/sent")
    assert page.get_by_role("heading", name="Check your mail").is_visible()
    visit(page, checked, "check your mail")

    assert site.dispatch() >= 1  # the outbox's normal dispatch sends the link
    links = site.sign_in_links(HEAD)
    assert len(links) == 1, links
    link = links[0]

    page.goto(link)  # opening the link only shows a button (mail scanners open links too)
    assert page.get_by_role("button", name="Continue as Priya Deshmukh").is_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "forumflow_session"]
    visit(page, checked, "continue")
    page.get_by_role("button", name="Continue as Priya Deshmukh").click()
    page.wait_for_url(f"{site.url}/")
    assert page.get_by_role("heading", name="My actions", level=1).is_visible()
    waiting = page.locator("ol.items > li")
    assert waiting.count() == 2  # the proposals in their endorsement rounds wait on a head of region, by deadline
    overdue, current = waiting.nth(0).inner_text(), waiting.nth(1).inner_text()
    assert f"#{site.proposals['overdue']}" in overdue and "Overdue" in overdue
    assert f"#{site.proposals['reviewed']}" in current and "Endorse" in current and "Overdue" not in current
    visit(page, checked, "my actions (en)")

    reviewed = site.proposals["reviewed"]
    page.get_by_role("link", name=re.compile(rf"^#{reviewed} ")).click()
    page.wait_for_url(f"{site.url}/proposals/{reviewed}")
    assert page.get_by_role("heading", name=re.compile(rf"^#{reviewed} "), level=1).is_visible()
    india = page.locator("li.state-row", has_text="India")
    assert "is-waiting" in (india.get_attribute("class") or "")
    assert not page.locator("li.event-endorse").count()
    visit(page, checked, "proposal (en)")
    page.get_by_role("button", name="Endorse for own region").click()
    page.wait_for_url(f"{site.url}/proposals/{reviewed}?done=endorse")
    assert page.get_by_role("status").inner_text() == "Done: Endorse for own region."
    endorsed = page.locator("li.event-endorse")
    assert endorsed.count() == 1 and "Priya Deshmukh" in endorsed.inner_text()  # the timeline shows her endorsement
    assert "is-endorsed" in (india.get_attribute("class") or "") and "Priya Deshmukh" in india.inner_text()
    assert not page.get_by_role("button", name="Endorse for own region").count()  # once per region
    visit(page, checked, "proposal after endorsing (en)")
    page.get_by_role("link", name="My actions", exact=True).click()
    page.wait_for_url(f"{site.url}/")
    assert page.locator("ol.items > li").count() == 1  # only the overdue round still waits on her

    page.get_by_role("link", name="Proposals", exact=True).click()
    page.wait_for_url(f"{site.url}/proposals")
    assert page.locator("tr.proposal").count() == len(site.proposals)
    page.get_by_label("Only overdue").check()
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r".*/proposals\?.*overdue=1"))
    assert [r.get_attribute("data-id") for r in page.locator("tr.proposal").all()] == [str(site.proposals["overdue"])]
    visit(page, checked, "proposals, overdue only")
    page.get_by_role("link", name="Forum", exact=True).click()
    page.wait_for_url(f"{site.url}/forum")
    visit(page, checked, "forum")
    page.get_by_role("link", name="My actions", exact=True).click()
    page.wait_for_url(f"{site.url}/")

    page.get_by_role("link", name="Русский").click()
    page.wait_for_url(f"{site.url}/")
    assert page.locator("html").get_attribute("lang") == "ru"
    assert ru("My actions") != "My actions"
    assert page.get_by_role("heading", name=ru("My actions"), level=1).is_visible()
    visit(page, checked, "my actions (ru)")

    page.get_by_role("link", name="中文").click()
    page.wait_for_url(f"{site.url}/")
    assert page.locator("html").get_attribute("lang") == "zh"
    heading = page.get_by_role("heading", name=zh("My actions"), level=1)
    assert heading.is_visible()
    assert cjk_glyphs_render(page, zh("My actions")), "Chinese text draws as missing glyphs: no CJK font"
    page.screenshot(path=str(tmp_path / "my-actions-zh.png"), full_page=True)
    visit(page, checked, "my actions (zh)")

    page.goto(f"{site.url}/no-such-page")
    assert page.get_by_role("heading", name=zh("Page not found")).is_visible()
    visit(page, checked, "not found (zh)")
    page.goto(f"{site.url}/")

    page.get_by_role("button", name=zh("Sign out")).click()
    page.wait_for_url(f"{site.url}/sign-in")
    assert page.get_by_role("heading", name=zh("Sign in"), level=1).is_visible()  # the language stays chosen
    page.goto(f"{site.url}/")
    assert page.url == f"{site.url}/sign-in"  # signed out

    page.goto(link)  # the link worked once
    assert page.get_by_role("heading", name=zh("This link cannot be used")).is_visible()
    visit(page, checked, "link used (zh)")

    problems = {name: found for name, found in checked.items() if found}
    assert not problems, problems


def test_a_mail_address_that_is_no_address_is_shown_next_to_the_field(site: Site, page: Any) -> None:
    checked: dict[str, list[str]] = {}
    page.goto(f"{site.url}/sign-in")
    field = page.get_by_label("Mail address")
    field.evaluate("el => { el.type = 'text'; el.required = false; }")  # as a browser without form validation sends it
    field.fill("not an address")
    page.get_by_role("button", name="Mail me a sign-in link").click()
    assert field.get_attribute("aria-invalid") == "true"
    assert re.search(r"Enter a mail address", page.locator("#address-error").inner_text())
    visit(page, checked, "sign-in with an error")
    assert not checked["sign-in with an error"], checked


def test_a_chair_reads_the_group_page_in_chinese(site: Site, page: Any) -> None:
    checked: dict[str, list[str]] = {}
    zh = translations("zh").gettext
    page.goto(site.grant_link("kuznetsov"))
    page.get_by_role("button", name=re.compile("Николай Кузнецов")).click()
    page.wait_for_url(f"{site.url}/")
    page.goto(f"{site.url}/language/zh?next=/")
    page.get_by_role("link", name="工业生产与农业").click()  # his group, from the header, named in Chinese
    page.wait_for_url(f"{site.url}/groups/industry")
    assert page.locator("html").get_attribute("lang") == "zh"
    assert f"#{site.proposals['in_review']}" in page.locator("main").inner_text()
    visit(page, checked, "group (zh)")
    page.get_by_role("link", name=zh("My actions"), exact=True).click()
    page.wait_for_url(f"{site.url}/")
    assert f"#{site.proposals['in_review']}" in page.locator("ol.items").inner_text()  # the chair recommends it
    visit(page, checked, "my actions of a chair (zh)")
    assert not any(checked.values()), checked


@contextlib.contextmanager
def signed_in(browser: Any, site: Site, handle: str) -> Iterator[Any]:
    """A fresh browser profile signed in as ``handle`` through a one-time link (as ``forumflow web-link`` gives)."""
    with fresh_page(browser) as page:
        page.goto(site.grant_link(handle))
        page.locator("main form button[type=submit]").click()  # "Continue as ...", in the member's language
        page.wait_for_url(f"{site.url}/")
        yield page


def test_a_proposal_from_draft_to_approval_in_three_languages(site: Site, browser: Any) -> None:
    checked: dict[str, list[str]] = {}
    ru, zh = translations("ru").gettext, translations("zh").gettext
    labels = Labels.of(site.runtime.definition)
    ru_ui, zh_ui = Ui("ru", dt.UTC, labels), Ui("zh", dt.UTC, labels)
    assert zh_ui.action("submit") != "Submit to the working group" and ru_ui.action("approve") != "Approve"

    with signed_in(browser, site, "zhao.lei") as page:  # the author reads Chinese
        assert page.locator("html").get_attribute("lang") == "zh"
        page.get_by_role("link", name="工业生产与农业").click()  # named in Chinese
        page.wait_for_url(f"{site.url}/groups/industry")
        page.get_by_role("link", name=zh("New proposal")).click()
        page.wait_for_url(f"{site.url}/proposals/new?group=industry")
        assert page.get_by_role("heading", name=zh("New proposal"), level=1).is_visible()
        visit(page, checked, "new proposal (zh)")
        page.get_by_label(zh("Title")).fill("Shared grain terminal")
        page.get_by_label(zh("Summary")).fill("A grain terminal shared by the regions.")
        page.get_by_label(zh("Text"), exact=True).fill("The regions build one terminal.")
        page.get_by_role("button", name=zh("Create the draft")).click()
        page.wait_for_url(re.compile(r".*/proposals/\d+\?done=create$"))
        pid = int(re.findall(r"/proposals/(\d+)", page.url)[0])
        assert page.get_by_role("status").inner_text() == zh("The proposal was created as a draft.")
        page.get_by_role("link", name=zh("Edit the text")).click()
        page.wait_for_url(f"{site.url}/proposals/{pid}/edit")
        visit(page, checked, "edit the text (zh)")
        page.get_by_label(zh("Text"), exact=True).fill("The regions build and share one terminal.")
        page.get_by_role("button", name=zh("Save the new version")).click()
        page.wait_for_url(f"{site.url}/proposals/{pid}?done=edit")
        assert page.locator("li.event-edit").count() == 1
        page.get_by_role("button", name=zh_ui.action("submit")).click()
        page.wait_for_url(f"{site.url}/proposals/{pid}?done=submit")
        assert zh_ui.state("in_review") in page.locator("p.meta .state").inner_text()
        visit(page, checked, "proposal submitted (zh)")

    with signed_in(browser, site, "kuznetsov") as page:  # the chair reads Russian; he comes from a mail's action link
        assert page.locator("html").get_attribute("lang") == "ru"
        page.goto(f"{site.url}/proposals/{pid}/actions/recommend")
        assert page.get_by_role("heading", name=ru_ui.action("recommend"), level=1).is_visible()
        visit(page, checked, "confirm recommend (ru)")
        page.get_by_role("button", name=ru_ui.action("recommend")).click()
        page.wait_for_url(f"{site.url}/proposals/{pid}?done=recommend")
        assert page.get_by_role("heading", name=ru("Endorsement round %(n)s") % {"n": 1}).is_visible()

    for i, head in enumerate(ONE_HEAD_PER_STATE):  # every member state endorses: consensus
        with signed_in(browser, site, head) as page:
            if head == "deshmukh":  # reads English; switches to Russian on the proposal's page
                page.goto(f"{site.url}/proposals/{pid}")
                page.get_by_role("link", name="Русский").click()
                page.wait_for_url(f"{site.url}/proposals/{pid}")
                assert page.locator("html").get_attribute("lang") == "ru"
                visit(page, checked, "proposal in its round (ru)")
            else:
                page.goto(f"{site.url}/proposals/{pid}")
            page.locator("#act-endorse button[type=submit]").click()
            page.wait_for_url(f"{site.url}/proposals/{pid}?done=endorse")
            assert page.locator("li.state-row.is-endorsed").count() == i + 1

    with signed_in(browser, site, "nurlanov") as page:  # head of the presiding region (KZ-55) in Russian ...
        assert page.locator("html").get_attribute("lang") == "ru"
        assert f"#{pid}" in page.locator("ol.items").inner_text()  # the approval waits on him
        page.get_by_role("link", name="中文").click()  # ... switches to Chinese
        page.wait_for_url(f"{site.url}/")
        page.get_by_role("link", name=re.compile(rf"^#{pid} ")).click()
        page.wait_for_url(f"{site.url}/proposals/{pid}")
        assert page.locator("li.event-consensus").count() == 1
        assert zh_ui.state("endorsed") in page.locator("p.meta .state").inner_text()
        page.get_by_role("button", name=zh_ui.action("approve")).click()
        page.wait_for_url(f"{site.url}/proposals/{pid}?done=approve")
        assert zh_ui.state("implementing") in page.locator("p.meta .state").inner_text()
        approved = page.locator("li.event-approve")
        assert approved.count() == 1 and "Ерлан Нурланов" in approved.inner_text()
        assert page.get_by_role("heading", name=zh("Implementation")).is_visible()
        visit(page, checked, "proposal approved (zh)")

    assert not any(checked.values()), {name: found for name, found in checked.items() if found}


def test_what_a_chair_typed_survives_the_end_of_the_session(site: Site, page: Any) -> None:
    checked: dict[str, list[str]] = {}
    ru = translations("ru").gettext
    pid = site.proposals["in_review"]
    page.goto(site.grant_link("kuznetsov"))  # reads Russian, on a phone-sized screen
    page.get_by_role("button", name=re.compile("Николай Кузнецов")).click()
    page.wait_for_url(f"{site.url}/")
    page.goto(f"{site.url}/proposals/{pid}")
    typed = "Верните, пожалуйста:\nнужен бюджет по годам."
    page.locator("#comment-return").fill(typed)
    raw = next(c["value"] for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    with session_scope(site.runtime.engine) as s:  # the session ends while the chair is typing
        assert end_session(s, raw, now=wall_clock())
    page.locator(f"form[action='/proposals/{pid}/actions/return'] button[type=submit]").click()
    page.wait_for_load_state("load")
    assert ru("Your session has ended, so this form was not sent. Sign in again and send it once more.") in (
        page.locator("main").inner_text()
    )
    assert page.locator("#kept-1").input_value() == typed
    visit(page, checked, "what was typed, after the session ended (ru)")
    page.get_by_role("link", name=ru("Sign in again")).click()
    page.wait_for_url(f"{site.url}/sign-in?next=%2Fproposals%2F{pid}")
    assert page.locator("html").get_attribute("lang") == "ru"  # his language, kept past the end of his session
    assert not any(checked.values()), checked
