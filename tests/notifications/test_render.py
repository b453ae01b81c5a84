"""Rendering: every template in every language, escaping, fallback, dates in the member's zone, the .ics."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from icalendar import Calendar
from jinja2 import Environment, FunctionLoader, StrictUndefined, select_autoescape

from config.definition import ForumDefinition
from models.tables import Event, Member, Proposal
from notifications.mail import Sender, build_mail
from notifications.recipients import DEFAULT_RULES
from notifications.render import LANGUAGES, EventView, Renderer, environment, format_when, header_text
from tests.factories import T0
from tests.notifications.helpers import check_ics

CYRILLIC = re.compile(r"[А-Яа-яЁё]")
CJK = re.compile(r"[\u4e00-\u9fff]")
DEADLINE = T0 + dt.timedelta(days=21)

PAYLOADS: dict[str, dict[str, Any]] = {
    "endorse": {"region": "RU-CHE", "round": 1},
    "object": {"region": "CN-XJ", "round": 1},
    "report_progress": {"percent": 40},
    "remind": {"recipients": ["petrov"], "offset_days": 7, "deadline": DEADLINE.isoformat()},
    "escalate": {"recipients": ["kuznetsov"], "level": 1, "deadline": DEADLINE.isoformat()},
    "handover": {"from_region": "RU-CHE", "to_region": "UZ-SA", "recipients": ["karimov"]},
    "progress_due": {"recipients": ["zhao.lei"], "due": DEADLINE.isoformat()},
}


def member(handle: str, language: str, timezone: str, name: str = "Test Member") -> Member:
    return Member(handle=handle, name=name, email=f"{handle}@example.org", language=language, timezone=timezone)


def view(action: str, *, title: str = "Joint agro-industrial park", comment: str = "", to_state: str = "reviewed") -> EventView:
    proposal = Proposal(
        id=7, title=title, group="industry", author="zhao.lei", state=to_state, state_entered_at=T0,
        deadline=DEADLINE, created_at=T0, updated_at=T0,
    )
    event = Event(
        id=sorted(DEFAULT_RULES).index(action) if action in DEFAULT_RULES else 99,
        proposal_id=7, seq=3, action=action, from_state="in_review", to_state=to_state,
        actor="kuznetsov" if action not in ("remind", "escalate", "handover", "progress_due") else "system",
        at=T0, comment=comment, payload=PAYLOADS.get(action, {}),
    )
    return EventView(
        event=event, proposal=proposal, group_name="Industrial production and agriculture", actor_name="Николай Кузнецов",
        chair="kuznetsov", heads=frozenset({"petrov"}), presiding_heads=frozenset({"petrov"}),
    )


PEOPLE = {
    "en": member("deshmukh", "en", "Asia/Kolkata", "Priya Deshmukh"),
    "ru": member("petrov", "ru", "Asia/Yekaterinburg", "Алексей Петров"),
    "zh": member("li.ming", "zh", "Asia/Shanghai", "李明"),
}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("action", sorted(DEFAULT_RULES))
def test_every_action_renders_in_every_language(definition: ForumDefinition, action: str, lang: str) -> None:
    rendered = Renderer(definition).event_message(view(action), PEOPLE[lang])

    assert rendered.language == lang
    assert rendered.subject.startswith("[sco-hrf] ") and "\n" not in rendered.subject
    assert "#7" in rendered.subject or "№7" in rendered.subject or "第7号" in rendered.subject
    assert "Joint agro-industrial park" in rendered.text and "Joint agro-industrial park" in rendered.html
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>") and f'<html lang="{lang}">' in rendered.html
    assert (rendered.ics is not None) == (action == "remind")
    if rendered.ics is not None:
        check_ics(rendered.ics)
    body = rendered.text.split("\n-- \n")[0]
    # Mails speak to people who read them in a mail program: links to the web app, never a command to type.
    assert "forumflow " not in rendered.text and "forumflow " not in rendered.html
    assert definition.forum.name_in(lang) in rendered.text  # the forum's own name in the reader's language
    if action == "edit":  # the differences from the version before, on the proposal's page
        second = view("edit")
        second.event.payload = {"text_version": 2, "fields": ["body"]}
        edited = Renderer(definition).event_message(second, PEOPLE[lang])
        assert "http://127.0.0.1:8000/proposals/7?from=1&amp;to=2" in edited.html
        assert "http://127.0.0.1:8000/proposals/7?from=1&to=2" in edited.text
    if lang == "ru":
        assert CYRILLIC.search(rendered.subject) and not CJK.search(body)
        assert rendered.text.startswith("Здравствуйте, Алексей Петров!")
    elif lang == "zh":
        assert CJK.search(rendered.subject) and rendered.text.startswith("李明，您好！")
    else:
        assert rendered.text.startswith("Dear Priya Deshmukh,")
        assert not CJK.search(rendered.subject) and not CYRILLIC.search(rendered.subject)


def test_the_russian_and_chinese_texts_say_the_right_thing(definition: ForumDefinition) -> None:
    renderer = Renderer(definition)

    ru = renderer.event_message(view("recommend"), PEOPLE["ru"])
    zh = renderer.event_message(view("recommend"), PEOPLE["zh"])

    assert ru.subject == "[sco-hrf] №7 «Joint agro-industrial park»: открыт раунд одобрения"
    assert "Просим одобрить предложение от имени вашего региона" in ru.text
    assert "Раунд одобрения главами регионов" in ru.text  # the state, translated
    assert zh.subject == "[sco-hrf] 第7号提案《Joint agro-industrial park》进入认可程序"
    assert "请代表贵地区表示认可或提出异议" in zh.text or "地区领导人认可程序" in zh.text


def test_dates_are_in_the_members_zone_and_language(definition: ForumDefinition) -> None:
    renderer = Renderer(definition)
    v = view("recommend")  # at 09:00 UTC, deadline 21 days later

    ru = renderer.event_message(v, PEOPLE["ru"]).text
    zh = renderer.event_message(v, PEOPLE["zh"]).text
    en = renderer.event_message(v, PEOPLE["en"]).text

    assert "22 марта 2021 г., 14:00" in ru  # Yekaterinburg is UTC+5
    assert "2021年3月22日 17:00" in zh  # Shanghai is UTC+8
    assert "March 22, 2021" in en and "2:30" in en and "PM" in en  # Kolkata is UTC+5:30
    assert format_when(T0, "en", dt.UTC).startswith("March 1, 2021")


def test_script_in_a_title_is_escaped_in_html(definition: ForumDefinition) -> None:
    v = view("submit", title="<script>alert('x')</script> & co", comment="<b>bold</b>\nsecond line")

    rendered = Renderer(definition).event_message(v, PEOPLE["en"])

    assert "<script>" not in rendered.html and "<b>bold</b>" not in rendered.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in rendered.html
    assert "&lt;b&gt;bold&lt;/b&gt;" in rendered.html
    assert "<script>alert('x')</script> & co" in rendered.text  # plain text stays as written


def test_a_missing_translation_falls_back_to_english(definition: ForumDefinition) -> None:
    base = environment()
    hidden = {"ru/events/submit.txt", "ru/message.txt"}

    def load(name: str) -> str | None:
        if name in hidden:
            return None
        source, _, _ = base.loader.get_source(base, name)  # type: ignore[union-attr]
        return source

    renderer = Renderer(definition)
    renderer.env = Environment(
        loader=FunctionLoader(load), autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )

    rendered = renderer.event_message(view("submit", to_state="in_review"), PEOPLE["ru"])
    recommend = renderer.event_message(view("recommend"), PEOPLE["ru"])

    assert rendered.subject == "[sco-hrf] #7 “Joint agro-industrial park” submitted for review"
    assert rendered.text.startswith("Dear Алексей Петров,")
    assert "Здравствуйте" in rendered.html  # the Russian HTML layout is still there
    assert recommend.subject.endswith("открыт раунд одобрения")  # other templates stay Russian


def test_unknown_language_and_unknown_action_fall_back(definition: ForumDefinition) -> None:
    renderer = Renderer(definition)
    german = member("schmidt", "de", "Europe/Berlin", "Anna Schmidt")

    rendered = renderer.event_message(view("submit", to_state="in_review"), german)
    custom = renderer.event_message(view("fast_track", to_state="reviewed"), PEOPLE["ru"])

    assert rendered.language == "en" and rendered.text.startswith("Dear Anna Schmidt,")
    assert custom.subject == "[sco-hrf] №7 «Joint agro-industrial park»: fast_track"
    assert "Раунд одобрения главами регионов" in custom.text


def test_reminders_carry_an_ics_for_the_deadline(definition: ForumDefinition) -> None:
    renderer = Renderer(definition)

    first = renderer.event_message(view("remind"), PEOPLE["ru"])
    second = renderer.event_message(view("remind"), PEOPLE["zh"])
    plain = renderer.event_message(view("recommend"), PEOPLE["ru"])

    assert first.ics is not None and second.ics is not None and plain.ics is None
    entry = check_ics(first.ics)
    check_ics(second.ics)
    assert entry.decoded("dtstart") == DEADLINE
    assert "DTEND" not in entry and "DURATION" not in entry  # a moment: it ends when it starts (RFC 5545 3.6.1)
    assert str(entry["summary"]) == first.subject
    assert str(entry["uid"]) == str(Calendar.from_ical(second.ics).walk("VEVENT")[0]["uid"])  # one entry per deadline
    sender = Sender.parse("forumflow@example.org")
    raw = build_mail(first, sender=sender, to_name="Петров", to_email="a.petrov@example.org", message_id="<x@e.org>", date=T0)
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_content_type() == "text/calendar" and attachment.get_filename() == "deadline.ics"
    assert attachment.get_content().replace("\r\n", "\n") == first.ics.decode().replace("\r\n", "\n")


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("DTEND:20210322T090000Z", "is not after DTSTART"),  # what forumflow used to send
        ("DTEND:20210322T080000Z", "is not after DTSTART"),
        ("DURATION:PT0S", "is not positive"),
        ("DTEND:20210322T100000Z\r\nDURATION:PT1H", "both DTEND and DURATION"),
    ],
)
def test_the_ics_check_refuses_an_event_that_ends_before_it_starts(extra: str, problem: str) -> None:
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:x@test\r\n"
        f"DTSTAMP:20210301T090000Z\r\nDTSTART:20210322T090000Z\r\n{extra}\r\nSUMMARY:s\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )

    with pytest.raises(AssertionError, match=problem):
        check_ics(ics.encode())


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a\r\nBcc: x@y", "a Bcc: x@y"),
        ("tab\there\x00nul", "tab here nul"),
        ("line\u2028separator\x85next", "line separator next"),
        ("x" * 300, "x" * 199 + "…"),
    ],
)
def test_header_text_is_one_safe_line(raw: str, clean: str) -> None:
    assert header_text(raw) == clean


def test_the_environment_is_shared_and_strict() -> None:
    env: Callable[[], Environment] = environment
    assert env() is env()
    assert env().undefined is StrictUndefined
    assert env().is_async is False
    assert env().select_template(["en/message.html"]).environment.autoescape  # type: ignore[truthy-function]


def test_readers_of_one_event_each_get_their_own_words(definition: ForumDefinition) -> None:
    renderer = Renderer(definition)  # one renderer: what it caches per event must not leak between readers
    v = view("recommend")
    author = member("zhao.lei", "ru", "Asia/Yekaterinburg", "Автор Предложения")

    head = renderer.event_message(v, PEOPLE["ru"])
    other = renderer.event_message(v, author)
    china = renderer.event_message(v, member("li.ming", "ru", "Asia/Shanghai", "Ли Мин"))

    assert "Просим одобрить" in head.text and "Просим одобрить" not in other.text
    assert other.text.startswith("Здравствуйте, Автор Предложения!") and head.text.startswith("Здравствуйте, Алексей Петров!")
    assert "22 марта 2021 г., 14:00" in head.text and "22 марта 2021 г., 17:00" in china.text
