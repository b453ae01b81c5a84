"""Mail about texts: earlier endorsers asked again in their language, every mail naming its text version."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage

import pytest
from sqlalchemy.engine import Engine

from config.definition import ForumDefinition
from config.settings import Settings
from models import Lifecycle, session_scope
from models.texts import proposal_create, text_edit
from notifications import dispatch_once
from notifications.recipients import Audience, RecipientRules
from notifications.render import Renderer
from tests.factories import AUTHOR, CHAIR, T0
from tests.notifications.helpers import SmtpServer, email_of
from tests.notifications.test_render import PEOPLE, view

BODY = "Scope: a cold-chain terminal.\nSite: Chelyabinsk.\n"
BODY_V2 = "Scope: a cold-chain terminal.\nSite: Chelyabinsk, Troitsk.\nBudget: 12 million EUR over three years.\n"
# Heads who endorse the first text: one per language.
EARLIER = {"deshmukh": "en", "seitkazieva": "ru", "wang.jianguo": "zh"}


def step(engine: Engine, lifecycle: Lifecycle, pid: int, action: str, actor: str, at: dt.datetime, comment: str = "") -> None:
    with session_scope(engine) as s:
        lifecycle.apply(s, pid, action, actor, comment=comment, now=at)


def second_round(engine: Engine, lifecycle: Lifecycle, settings: Settings, server: SmtpServer, *, revise: bool) -> int:
    """Round 1 on text 1 (three endorsements, then an objection), then round 2, revised or not; mail of round 2 only."""
    with session_scope(engine) as s:
        data = proposal_create(group="industry", author=AUTHOR, title="Joint agro-industrial park", body=BODY)
        p = lifecycle.create_proposal(session=s, proposal_in=data, now=T0)
        assert p.id is not None
        pid = p.id
    step(engine, lifecycle, pid, "submit", AUTHOR, T0)
    step(engine, lifecycle, pid, "recommend", CHAIR, T0)
    for head in EARLIER:
        step(engine, lifecycle, pid, "endorse", head, T0)
    step(engine, lifecycle, pid, "object", "yousafzai", T0, comment="Where is the budget?")
    later = T0 + dt.timedelta(days=3)
    if revise:
        step(engine, lifecycle, pid, "return", CHAIR, later, comment="Add the budget")
        with session_scope(engine) as s:
            lifecycle.edit(s, pid, AUTHOR, text_edit(body=BODY_V2, summary="With a budget."), now=later)
        step(engine, lifecycle, pid, "submit", AUTHOR, later)
    dispatch_once(engine, settings, lifecycle, now=later)
    server.received.clear()
    step(engine, lifecycle, pid, "recommend", CHAIR, later)
    dispatch_once(engine, settings, lifecycle, now=later)
    return pid


def mail_to(engine: Engine, server: SmtpServer, handle: str) -> tuple[EmailMessage, str, str]:
    (received,) = server.to(email_of(engine, handle))
    msg = received.message
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return msg, text.get_content(), html.get_content()


ASKED_AGAIN = {
    "en": ("revised text (version 2), please endorse again", "You endorsed text version 1 in round 1. The text has changed since",
           "lines added: 3, lines removed: 1", "Text version:   2"),
    "ru": ("новая редакция текста (2), просим одобрить снова",
           "Вы одобрили редакцию текста 1 в раунде №1. С тех пор текст изменился",
           "добавлено строк: 3, удалено строк: 1", "Редакция текста: 2"),
    "zh": ("文本已修改（第2版），请重新认可", "您曾在第1轮认可文本第1版。此后文本已修改", "新增3行，删除1行", "文本版本：  2"),
}


def test_earlier_endorsers_are_told_the_text_changed_in_their_language(
    forum: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    pid = second_round(forum, lifecycle, settings, smtp_server, revise=True)

    for handle, lang in EARLIER.items():
        msg, text, html = mail_to(forum, smtp_server, handle)
        subject, todo, counts, version = ASKED_AGAIN[lang]
        assert msg["Content-Language"] == lang
        assert subject in msg["Subject"]
        assert todo in text and counts in text and version in text
        page = f"{settings.base_url}/proposals/{pid}?from=1&to=2"  # the whole difference: a link, not a command
        assert page in text and page.replace("&", "&amp;") in html and "forumflow " not in text + html
        # The first changed lines, in order: the summary's, then the body's.
        lines = [line.strip() for line in text.splitlines() if line.strip()[:2] in ("+ ", "- ")]
        summary = {"en": "(summary) ", "ru": "(краткое содержание) ", "zh": "（摘要）"}[lang]
        assert lines[0] == f"+ {summary}With a budget."
        assert lines[1:] == ["- Site: Chelyabinsk.", "+ Site: Chelyabinsk, Troitsk.", f"+ {BODY_V2.splitlines()[-1]}"]
        assert "+ Budget: 12 million EUR over three years.</li>" in html
    # A head who did not endorse the earlier text, and the author, get the ordinary mail of the new round.
    msg, text, _ = mail_to(forum, smtp_server, "patel")
    assert msg["Subject"].endswith("is open for endorsement") and "Please endorse it or object" in text
    assert "forumflow diff" not in text and "Text version:   2" in text
    _, text, _ = mail_to(forum, smtp_server, AUTHOR)
    assert "forumflow diff" not in text and "文本版本：  2" in text


UNCHANGED = {
    "en": ("new endorsement round, please endorse again", "The text has not changed since (it is still version 1)"),
    "ru": ("новый раунд одобрения, просим одобрить снова", "Текст с тех пор не изменился (это по-прежнему редакция 1)"),
    "zh": ("开启新一轮认可，请重新认可", "此后文本未作修改（仍为第1版）"),
}


def test_earlier_endorsers_are_told_when_the_text_did_not_change(
    forum: Engine, lifecycle: Lifecycle, settings: Settings, smtp_server: SmtpServer
) -> None:
    pid = second_round(forum, lifecycle, settings, smtp_server, revise=False)

    for handle, lang in EARLIER.items():
        msg, text, _ = mail_to(forum, smtp_server, handle)
        subject, todo = UNCHANGED[lang]
        assert subject in msg["Subject"] and todo in text
        assert f"forumflow diff {pid}" not in text


def test_earlier_endorsers_are_a_target_of_their_own() -> None:
    audience = Audience(author="a", chair="c", group_members=[], heads={"h1": "RU-CHE", "h2": "CN-XJ"}, secretariat=[],
                        presiding_region=None, earlier_endorsers=["h2"])
    rules = RecipientRules.__new__(RecipientRules)
    rules.rules = {"recommend": ("author", "earlier_endorsers")}  # a forum that tells only the author and earlier endorsers
    assert rules.resolve("recommend", "c", audience) == ["a", "h2"]


@pytest.mark.parametrize(("lang", "line"), [("en", "Text version:   3"), ("ru", "Редакция текста: 3"), ("zh", "文本版本：  3")])
def test_reminders_name_the_text_version(definition: ForumDefinition, lang: str, line: str) -> None:
    v = view("remind")
    v.event.payload = v.event.payload | {"text_version": 3}
    rendered = Renderer(definition).event_message(v, PEOPLE[lang])
    assert line in rendered.text and ">3</td>" in rendered.html
