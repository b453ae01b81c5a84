"""Languages: the member's by default, a switch on every page that comes back to it and is remembered; catalogs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.web.conftest import Clock, link_for, sign_in
from web.i18n import LANG_COOKIE, TRANSLATIONS_DIR

WEB = Path(__file__).resolve().parents[2] / "web"
MODELS = WEB.parent / "models"


def lang_of(html: str) -> str:
    """The page's declared language."""
    match = re.search(r'<html lang="(\w+)">', html)
    assert match
    return match.group(1)


def test_switch_comes_back_to_the_page_and_is_remembered(client: TestClient) -> None:
    page = client.get("/sign-in?next=/x")
    assert lang_of(page.text) == "en"
    switch = re.search(r'href="(/language/zh\?next=[^"]+)"', page.text)
    assert switch, "the switch is on the page"
    r = client.get(switch.group(1).replace("&amp;", "&"))
    assert r.status_code == 303 and r.headers["location"] == "/sign-in?next=/x"
    assert client.cookies[LANG_COOKIE] == "zh"
    again = client.get("/sign-in?next=/x")
    assert lang_of(again.text) == "zh" and "发送登录链接" in again.text
    assert lang_of(client.get("/sign-in/sent").text) == "zh"  # on other pages too
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(LANG_COOKIE))
    assert "max-age=31536000" in cookie.lower()  # kept for a year


def test_members_read_their_own_language_until_they_switch(client: TestClient, forum: Engine, clock: Clock) -> None:
    sign_in(client, forum, "petrov", clock.now)
    home = client.get("/")
    assert lang_of(home.text) == "ru" and "Мои действия" in home.text
    client.get("/language/en?next=/")
    assert lang_of(client.get("/").text) == "en"
    sign_in(client, forum, "wang.jianguo", clock.now)  # the choice stays with the browser
    assert lang_of(client.get("/").text) == "en"


@pytest.mark.parametrize(("handle", "lang"), [("petrov", "ru"), ("wang.jianguo", "zh"), ("deshmukh", "en")])
def test_default_is_the_members_language(client: TestClient, forum: Engine, clock: Clock, handle: str, lang: str) -> None:
    page = client.get(link_for(forum, handle, clock.now))
    assert lang_of(page.text) == "en"  # not signed in yet: nothing known about the reader
    sign_in(client, forum, handle, clock.now)
    assert lang_of(client.get("/").text) == lang


def test_browser_language_before_sign_in(client: TestClient) -> None:
    assert lang_of(client.get("/sign-in", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}).text) == "zh"
    assert lang_of(client.get("/sign-in", headers={"Accept-Language": "de, ru;q=0.5"}).text) == "ru"
    assert lang_of(client.get("/sign-in", headers={"Accept-Language": "de"}).text) == "en"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/\\evil"])
def test_switch_stays_in_the_app(client: TestClient, target: str) -> None:
    r = client.get("/language/ru", params={"next": target})
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_unknown_language_changes_nothing(client: TestClient) -> None:
    r = client.get("/language/xx", params={"next": "/sign-in"})
    assert r.status_code == 303 and r.headers["location"] == "/sign-in" and LANG_COOKIE not in client.cookies


def _source_messages() -> set[str | tuple[str, str]]:
    found: set[str | tuple[str, str]] = set()
    methods = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"trim_blocks": "true", "lstrip_blocks": "true"}}
    for _file, _line, message, _comments, _context in extract_from_dir(str(WEB), methods, options_map=options):
        found.add(message if isinstance(message, str) else (message[0], message[1]))
    # The domain's messages for any reader (``models.errors.Said``), shown on the pages in the reader's language.
    for _file, _line, message, _comments, _context in extract_from_dir(str(MODELS), [("**.py", "python")]):
        found.add(message if isinstance(message, str) else (message[0], message[1]))
    return found


def _placeholders(message: str) -> set[str]:
    """The named placeholders of a message (and ``%%`` as "%")."""
    return set(re.findall(r"%\((\w+)\)s", message)) | ({"%"} if "%%" in message else set())


def _strings(value: object) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("lang", ["ru", "zh"])
def test_every_message_is_translated_and_compiled(lang: str) -> None:
    folder = TRANSLATIONS_DIR / lang / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as f:
        po = read_po(f)
    with (folder / "messages.mo").open("rb") as f:
        mo = read_mo(f)
    wanted = _source_messages()
    assert len(wanted) > 30
    for message in wanted:
        key = message if isinstance(message, str) else message[0]
        entry = po.get(key)
        assert entry is not None, f"{lang}: {key!r} missing from messages.po (pybabel extract + update)"
        strings = _strings(entry.string)
        assert strings and all(strings), f"{lang}: {key!r} not translated"
        assert "fuzzy" not in entry.flags
        # A translation names what its source names (a plural form may leave the count out, as "One ..." does).
        names = set().union(*(_placeholders(source) for source in _strings(message)))
        for translated in strings:
            assert _placeholders(translated) <= names, f"{lang}: {key!r}: unknown placeholders"
            if isinstance(message, str):
                assert _placeholders(translated) == names, f"{lang}: {key!r}: placeholders differ"
        compiled = mo.get(key)
        assert compiled is not None, f"{lang}: {key!r} missing from messages.mo (pybabel compile)"
        assert _strings(compiled.string) == _strings(entry.string), f"{lang}: messages.mo is stale (pybabel compile)"
