"""Languages of the web app: Babel catalogs for en/ru/zh, the reader's language and time zone, formatting.

English is the source language; ``web/translations/<lang>/LC_MESSAGES/messages.{po,mo}`` hold Russian
and Chinese (the compiled ``.mo`` files are committed, so an installed package needs no build step).
The language is the one chosen with the switch (a cookie), else the member's, else the browser's.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babel.support import NullTranslations, Translations
from starlette.requests import Request

from config.definition import ForumDefinition
from models.errors import N_, ForumflowError, Said, TermKind
from models.tables import Member
from notifications.render import FALLBACK_LANGUAGE, LANGUAGES, environment, format_when, member_zone, region_label

TRANSLATIONS_DIR = Path(__file__).parent / "translations"
LANG_COOKIE = "forumflow_lang"
LANG_COOKIE_AGE = 365 * 24 * 3600  # seconds: the switch's choice is remembered for a year
# Each language's name in itself, for the switch.
LANGUAGE_NAMES = {"en": "English", "ru": "Русский", "zh": "中文"}

__all__ = [
    "LANGUAGE_NAMES",
    "LANG_COOKIE",
    "LANG_COOKIE_AGE",
    "N_",
    "Labels",
    "Ui",
    "UiReader",
    "choose_language",
    "group_names",
    "translations",
]


@functools.cache
def translations(lang: str) -> NullTranslations:
    """The compiled catalog of ``lang`` (English, the source language, needs none)."""
    if lang == FALLBACK_LANGUAGE:
        return NullTranslations()
    return Translations.load(str(TRANSLATIONS_DIR), [lang], domain="messages")


def _accepted(header: str) -> list[str]:
    """Primary language subtags of an Accept-Language header, best first."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, i, tag.split("-")[0].lower()))
    return [tag for _, _, tag in sorted(ranked)]


def choose_language(request: Request, member: Member | None) -> str:
    """The switch's choice (cookie), else the member's language, else the browser's, else English."""
    chosen = request.cookies.get(LANG_COOKIE, "")
    if chosen in LANGUAGES:
        return chosen
    if member is not None and member.language in LANGUAGES:
        return member.language
    for tag in _accepted(request.headers.get("accept-language", "")):
        if tag in LANGUAGES:
            return tag
    return FALLBACK_LANGUAGE


@functools.cache
def _labels(lang: str) -> Any:
    """State and action labels in ``lang`` (shared with the mails)."""
    return environment().select_template([f"{lang}/labels.txt", f"{FALLBACK_LANGUAGE}/labels.txt"]).module


@dataclass(frozen=True)
class Labels:
    """The definition's own (English) labels of states and actions, the fallback of every language."""

    states: dict[str, str]
    actions: dict[str, str]

    @classmethod
    def of(cls, definition: ForumDefinition) -> Labels:
        """Read them from the workflow."""
        wf = definition.workflow
        return cls({s.name: s.label or s.name for s in wf.states}, {a.name: a.label or a.name for a in wf.actions})


@dataclass(frozen=True)
class Ui:
    """How one reader sees things: language, time zone, and the formatting that follows from them."""

    lang: str
    tz: dt.tzinfo
    labels: Labels

    @classmethod
    def for_reader(cls, request: Request, member: Member | None, labels: Labels) -> Ui:
        """The reader's language and (for a member) time zone; UTC for someone not signed in."""
        return cls(choose_language(request, member), member_zone(member) if member is not None else dt.UTC, labels)

    @property
    def translations(self) -> NullTranslations:
        """The catalog in force."""
        return translations(self.lang)

    def gettext(self, message: str) -> str:
        """``message`` in the reader's language."""
        return self.translations.gettext(message)

    def when(self, value: dt.datetime) -> str:
        """A moment as the reader reads it: date and time in their zone, with the zone's name."""
        return format_when(value, self.lang, self.tz)

    def state(self, name: str) -> str:
        """A state's label."""
        return str(_labels(self.lang).states.get(name, self.labels.states.get(name, name)))

    def action(self, name: str) -> str:
        """An action's label, as a button or heading (first letter capitalised)."""
        label = str(_labels(self.lang).actions.get(name, self.labels.actions.get(name, name)))
        return label[:1].upper() + label[1:]


def group_names(definition: ForumDefinition, lang: str) -> dict[str, str]:
    """Each working group's name in ``lang``, by key, in the definition's order."""
    return {g.key: g.name_in(lang) for g in definition.working_groups}


@dataclass(frozen=True)
class UiReader:
    """A reader of the pages, as ``models.errors.Said`` needs one: their language, people's names, groups' names."""

    ui: Ui
    names: Mapping[str, str]
    groups: Mapping[str, str]

    @classmethod
    def of(cls, ui: Ui, definition: ForumDefinition) -> UiReader:
        """The names as the forum's definition gives them (a handle no longer in it is shown as it is)."""
        return cls(
            ui, {m.handle: m.name for m in definition.members},
            group_names(definition, ui.lang),
        )

    def gettext(self, message: str) -> str:
        """``message`` in the reader's language."""
        return self.ui.gettext(message)

    def term(self, kind: TermKind, value: Any) -> str:
        """An action's or state's label, a member's or group's name, a region's name, a moment in the reader's zone."""
        if kind == "action":
            return self.ui.action(str(value))
        if kind == "state":
            return self.ui.state(str(value))
        if kind == "person":
            return self.names.get(str(value), str(value))
        if kind == "group":
            return self.groups.get(str(value), str(value))
        if kind == "region":
            return region_label(str(value), self.ui.lang)
        if isinstance(value, dt.datetime):
            return self.ui.when(value)
        return str(value)

    def say(self, said: Said | ForumflowError) -> str:
        """A message or an error's message, as this reader reads it."""
        return said.render(self) if isinstance(said, Said) else said.for_reader(self)
