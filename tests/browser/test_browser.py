"""In a real browser: sign in from the mailed link, see My actions, switch languages, sign out; axe-core on every page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Site
from web.i18n import translations

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
    page.get_by_role("link", name="Industrial production and agriculture").click()  # his group, from the header
    page.wait_for_url(f"{site.url}/groups/industry")
    assert page.locator("html").get_attribute("lang") == "zh"
    assert f"#{site.proposals['in_review']}" in page.locator("main").inner_text()
    visit(page, checked, "group (zh)")
    page.get_by_role("link", name=zh("My actions"), exact=True).click()
    page.wait_for_url(f"{site.url}/")
    assert f"#{site.proposals['in_review']}" in page.locator("ol.items").inner_text()  # the chair recommends it
    visit(page, checked, "my actions of a chair (zh)")
    assert not any(checked.values()), checked
