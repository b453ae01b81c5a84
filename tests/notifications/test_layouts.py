"""Mails rendered once per kind of reader and filled with each name are the mails jinja2 renders for each reader."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.definition import ForumDefinition
from models.tables import Member
from notifications.recipients import DEFAULT_RULES
from notifications.render import LANGUAGES, EventView, Renderer
from tests.notifications.test_render import member, view

ZONES = ("Asia/Yekaterinburg", "Asia/Kolkata", "Asia/Shanghai", "America/St_Johns", "UTC", "Not/A_Zone")
NAMES = ("Алексей Петров", "李明", "O'Brien <b>&amp;</b> \"Q\"", "  spaced   name ", "\ue000odd\ue000", "")
CHANGE = {
    "from_version": 1, "to_version": 2, "added": 1, "removed": 1,
    "first": [{"field": "body", "sign": "+", "text": "Site: Troitsk <b>"}, {"field": "title", "sign": "-", "text": "Old"}],
}


def readers(lang: str) -> list[Member]:
    """One reader of each part in ``view``'s event (author, chair, head who presides, member), in several zones."""
    handles = ["zhao.lei", "kuznetsov", "petrov", "deshmukh", "someone"]
    preferences = ["immediate", "digest", "off", "immediate", "digest", "immediate"]
    found = []
    for h, zone, name, notify in zip(handles * 3, ZONES * 3, NAMES * 3, preferences * 3, strict=False):
        reader = member(h, lang, zone, name)
        reader.notify = notify
        found.append(reader)
    return found


def direct(definition: ForumDefinition, v: EventView, reader: Member) -> Any:
    """What jinja2 renders with every value of this reader (a fresh renderer: nothing kept from before)."""
    return Renderer(definition).direct_layout(v, reader).fill(reader.name)


def variants(action: str) -> list[EventView]:
    """The event as is; without a deadline; with earlier endorsers and a text change; with an awkward title."""
    plain = view(action)
    no_deadline = view(action, to_state="somewhere_else")
    no_deadline.proposal.deadline = None
    earlier = view(action, comment="Please   look\u00a0again\n\nsoon")
    earlier.event.payload = earlier.event.payload | {"earlier_endorsers": ["petrov", "deshmukh"], "text_change": CHANGE}
    awkward = view(action, title="Grain\u2028corridor  <script>x()</script> & “co”\u00a0" + "long " * 50)
    marked = view(action, title="Looks like a \ue000hole\ue000", comment="\ue000")
    found = [plain, no_deadline, earlier, awkward, marked]
    for n, v in enumerate(found):  # a renderer keeps what it rendered by event id: one id per event
        v.event.id = 1000 * n + (v.event.id or 0)
    return found


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("action", [*sorted(DEFAULT_RULES), "fast_track"])
def test_every_template_filled_per_name_is_what_jinja_renders(definition: ForumDefinition, action: str, lang: str) -> None:
    renderer = Renderer(definition)  # one renderer for every reader: what it keeps must not mix readers up
    mails = 0
    for v in variants(action):
        for reader in readers(lang):
            assert renderer.event_message(v, reader) == direct(definition, v, reader), (action, lang, reader.handle)
            mails += 1
    assert renderer.layouts_made < mails  # readers of a kind shared their layout


def test_readers_of_one_kind_share_one_layout_and_each_gets_their_name(definition: ForumDefinition) -> None:
    renderer = Renderer(definition)
    v = view("recommend")
    heads = [member(f"head{i}", "ru", "Asia/Yekaterinburg", f"Глава <{i}>") for i in range(5)]

    mails = [renderer.event_message(v, h) for h in heads]

    assert renderer.layouts_made == 1
    assert [m.text.split("\n")[0] for m in mails] == [f"Здравствуйте, Глава <{i}>!" for i in range(5)]
    assert all(f"Глава &lt;{i}&gt;" in m.html for i, m in enumerate(mails))
    assert "22 марта 2021 г., 14:00" in mails[0].text


def test_parts_no_template_reads_share_a_layout(definition: ForumDefinition) -> None:
    renderer = Renderer(definition)
    v = view("recommend")  # its template reads whether the reader is a head, not whether they preside

    renderer.event_message(v, member("petrov", "ru", "UTC", "Пётр"))  # a head who presides
    renderer.event_message(v, member("other.head", "ru", "UTC", "Иван"))  # not in view's heads: not a head
    head = member("head2", "ru", "UTC", "Олег")
    v2 = EventView(v.event, v.proposal, v.group_name, v.actor_name, v.chair, frozenset(), frozenset({"petrov", "head2"}))
    renderer.event_message(v2, head)  # a head who does not preside

    assert renderer.layouts_made == 2


def test_an_unsaved_event_is_rendered_without_keeping_anything(definition: ForumDefinition) -> None:
    renderer = Renderer(definition)
    v = view("submit")
    v.event.id = None
    reader = member("deshmukh", "en", "Asia/Kolkata", "Priya Deshmukh")

    assert renderer.event_message(v, reader) == direct(definition, v, reader)
    assert renderer.event_message(v, reader) == direct(definition, v, reader)
    assert renderer.layouts_made == 2


text = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    title=text, comment=text, name=text, lang=st.sampled_from(LANGUAGES), zone=st.sampled_from(ZONES),
    action=st.sampled_from(["submit", "recommend", "remind", "escalate", "progress_due", "endorse"]),
    hours=st.integers(-48, 48),
)
def test_any_title_comment_name_and_moment_fill_in_as_they_render(
    definition: ForumDefinition, title: str, comment: str, name: str, lang: str, zone: str, action: str, hours: int
) -> None:
    v = view(action, title=title, comment=comment)
    v.event.at += dt.timedelta(hours=hours, minutes=hours * 7)
    reader = member("petrov", lang, zone, name)

    assert Renderer(definition).event_message(v, reader) == direct(definition, v, reader)
