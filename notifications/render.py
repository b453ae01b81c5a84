"""Rendering: one jinja2 Environment, messages per member language, dates in the member's zone.

Templates live in ``notifications/templates/<lang>/``:
  events/<action>.txt   ``{% set %}`` blocks ``subject``, ``lead`` and optionally ``todo`` (plain text)
  message.txt|html      the layout of a mail about one event
  digest.txt|html       the layout of a daily digest (the text one also sets ``subject``)
  labels.txt            translated state, action and text-field labels, and the system's name
A template missing in a language falls back to English; an action without a template of its own uses
``events/_generic.txt``. Sentences are plain text and are escaped when they enter the HTML layouts.

A mail about an event is rendered once per kind of reader (the event, the reader's language, zone, part in it and
preference) as a ``Layout`` that each mail fills with its reader's name; the templates themselves are prepared
(``notifications.prepared``): rendered once per shape of their variables and filled in after that. Where the
templates only write the zoned moments out (most events), the layout is rendered once for every zone with a mark in
place of each moment, and each zone's layout is that one with its moments put in.
"""

from __future__ import annotations

import datetime as dt
import functools
import gettext
import logging
import re
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
from babel.dates import format_date, format_datetime, format_time, format_timedelta, get_datetime_format
from babel.numbers import format_percent
from icalendar import Alarm, Calendar
from icalendar import Event as CalendarEvent
from jinja2 import Environment, PackageLoader, StrictUndefined, Template, select_autoescape
from markupsafe import escape

from config.definition import ForumDefinition
from config.settings import DEFAULT_BASE_URL
from models.lifecycle import SYSTEM
from models.tables import Event, Proposal
from models.textdiff import ChangeSummary
from notifications import prepared

log = logging.getLogger(__name__)

LANGUAGES = ("en", "ru", "zh")
FALLBACK_LANGUAGE = "en"
SUBJECT_MAX = 200
UNSAFE_HEADER_CHARS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
# Kinds of reader whose layouts a Renderer keeps; deliveries of one event are claimed together.
LAYOUTS_KEPT = 1024


@functools.cache
def environment() -> Environment:
    """The one jinja2 Environment of the package (created on first use)."""
    return Environment(
        loader=PackageLoader("notifications", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # package data does not change under a running process
    )


def header_text(value: str, limit: int = SUBJECT_MAX) -> str:
    """Text safe for a mail header: one line, no control characters, at most ``limit`` characters."""
    value = unicodedata.normalize("NFC", value)
    value = " ".join(UNSAFE_HEADER_CHARS.sub(" ", value).split())
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


class Reader(Protocol):
    """Whom a mail is for, as rendering reads them (a ``Member`` is one)."""

    @property
    def handle(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def language(self) -> str: ...

    @property
    def timezone(self) -> str: ...

    @property
    def notify(self) -> str: ...


def member_zone(member: Reader) -> dt.tzinfo:
    """The member's time zone (UTC if the stored name is unknown)."""
    try:
        return ZoneInfo(member.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("member %s has unknown time zone %r; using UTC", member.handle, member.timezone)
        return dt.UTC


def language_of(member: Reader) -> str:
    """The member's language if the package speaks it, else English."""
    return member.language if member.language in LANGUAGES else FALLBACK_LANGUAGE


@functools.lru_cache(maxsize=4096)  # an event goes to many members in a few zones and languages
def format_when(value: dt.datetime, lang: str, tz: dt.tzinfo) -> str:
    """A moment as the member reads it: date and time in their zone, with the zone's name."""
    date = format_date(value.astimezone(tz).date(), "long", locale=lang)
    time = format_time(value, "short", tzinfo=tz, locale=lang)
    zone = format_datetime(value, "zzzz", tzinfo=tz, locale=lang)
    joined = str(get_datetime_format("long", locale=lang)).replace("{1}", date).replace("{0}", time)
    return f"{joined}（{zone}）" if lang == "zh" else f"{joined} ({zone})"


@functools.lru_cache(maxsize=4096)
def format_day(value: dt.datetime, lang: str, tz: dt.tzinfo) -> str:
    """The date of a moment in the member's zone."""
    return format_date(value.astimezone(tz).date(), "medium", locale=lang)


@functools.cache
def region_label(code: str, lang: str) -> str:
    """A region's name in ``lang`` where pycountry has it, else its ISO name; with its code."""
    sub = pycountry.subdivisions.get(code=code)
    if sub is None:
        return code
    name = sub.name
    if lang != "en":
        try:
            name = gettext.translation("iso3166-2", pycountry.LOCALES_DIR, languages=[lang]).gettext(name)
        except OSError:
            pass
    return f"{name} ({code})"


@dataclass(frozen=True)
class Rendered:
    """A message ready to be put in an envelope."""

    subject: str
    text: str
    html: str
    language: str
    ics: bytes | None = None


@dataclass(frozen=True)
class Layout:
    """A mail about one event for readers of one kind, rendered once; each mail fills in its reader's name.

    ``text`` and ``html`` are the mail's text and HTML cut where the reader's name goes.
    """

    subject: str
    text: tuple[str, ...]
    html: tuple[str, ...]
    language: str
    ics: bytes | None = None

    @classmethod
    def of(
        cls, subject: str, text: prepared.Rendering, html: prepared.Rendering, language: str, ics: bytes | None = None
    ) -> Layout:
        """The layout of renderings with holes (``notifications.prepared``): every hole filled but the name."""
        return cls(subject, _cut_at_name(*text), _cut_at_name(*html), language, ics)

    def fill(self, name: str) -> Rendered:
        """The mail for a reader called ``name`` (escaped in the HTML, as the template would)."""
        return Rendered(self.subject, name.join(self.text), str(escape(name)).join(self.html), self.language, self.ics)


def _cut_at_name(pieces: Sequence[str], values: Mapping[str, str]) -> tuple[str, ...]:
    """Pieces split at holes, every hole but the name's filled in, cut where the name goes."""
    cuts, current = [], []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            current.append(piece)
        elif piece == "name":
            cuts.append("".join(current))
            current = []
        else:
            current.append(values[piece])
    return (*cuts, "".join(current))


def _put(pieces: tuple[str, ...], texts: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """``pieces`` with each mark replaced by its text."""
    for mark, text in texts:
        pieces = tuple(piece.replace(mark, text) for piece in pieces)
    return pieces


@dataclass(frozen=True)
class EventView:
    """What the renderer needs about one event, loaded by the caller."""

    event: Event
    proposal: Proposal
    group_name: str
    actor_name: str
    chair: str
    presiding_heads: frozenset[str] = frozenset()
    heads: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Said:
    """An event as one kind of reader sees it: template variables, headline, lead sentence, what to do."""

    ctx: dict[str, Any]
    subject: str  # as the event template says it
    lead: str
    todo: str

    @property
    def headline(self) -> str:
        """The subject as a header holds it."""
        return header_text(self.subject)


@dataclass(frozen=True)
class _Base:
    """What the templates of one event say the same way to every reader in one language."""

    ctx: dict[str, Any]
    earlier: dict[str, Any] | None  # for earlier endorsers: what changed since
    moments: dict[str, dt.datetime | None]


ROLE_FLAGS = ("is_author", "is_chair", "is_head", "is_presiding", "is_earlier_endorser")
# The moments a mail shows in its reader's zone (``Renderer._moments``).
ZONED = ("at", "deadline", "deadline_day", "due")
# Marks standing for a zoned moment in a layout rendered for every zone: as written out (``_MARKS``) and as written
# in a sentence whose spaces were tidied (``_TIDY_MARKS``). A private-use character (not the one of
# ``notifications.prepared``'s holes) and a token drawn per process: no text holds one by chance, nor by design.
_MARK_TOKEN = uuid.uuid4().hex
_MARKS = {name: f"\ue001{name}.{_MARK_TOKEN}\ue001" for name in ZONED}
_TIDY_MARKS = {name: f"\ue001{name}.tidy.{_MARK_TOKEN}\ue001" for name in ZONED}
_NO_LAYOUT = object()  # kept for kinds of reader whose layout cannot be shared between zones


def _tidy(text: str) -> str:
    """``text`` on one line with single spaces, as a sentence of a mail is written."""
    return " ".join(text.split())


class Renderer:
    """Renders mails about events and digests for members of one forum (one instance per run: it caches)."""

    def __init__(self, definition: ForumDefinition, *, base_url: str = DEFAULT_BASE_URL) -> None:
        self.definition = definition
        self.base_url = base_url.rstrip("/")
        self.env = environment()
        self.forum_key = definition.forum.key
        self._state_labels = {s.name: s.label or s.name for s in definition.workflow.states}
        self._action_labels = {a.name: a.label or a.name for a in definition.workflow.actions}
        self._slas = {s.name: s.sla_days for s in definition.workflow.states}
        self._groups = {g.key: g for g in definition.working_groups}
        self._label_modules: dict[str, Any] = {}
        self._templates: dict[tuple[Any, ...], Template] = {}
        self._zones: dict[tuple[str, str, str], tuple[str, dt.tzinfo]] = {}  # (handle, language, zone name)
        self._roles_read: dict[tuple[Any, ...], frozenset[str]] = {}
        self._bases: dict[tuple[Any, ...], _Base] = {}
        self._named: dict[tuple[Any, ...], bool] = {}
        self._said_cache: dict[tuple[Any, ...], _Said] = {}
        self._zone_free: dict[tuple[Any, ...], bool] = {}
        self._zoneless: OrderedDict[tuple[Any, ...], Layout | object] = OrderedDict()
        self.layouts_made = 0  # kinds of reader whose mail was rendered (tests, benches)
        self._layouts: OrderedDict[tuple[Any, ...], Layout] = OrderedDict()

    # ------------------------------------------------------------------ templates
    def _select(self, lang: str, *names: str) -> Template:
        key = (self.env, lang, names)
        template = self._templates.get(key)
        if template is None:
            candidates = [f"{lng}/{name}" for name in names for lng in dict.fromkeys((lang, FALLBACK_LANGUAGE))]
            template = self._templates[key] = self.env.select_template(candidates)
        return template

    def _labels(self, lang: str) -> Any:
        if lang not in self._label_modules:
            self._label_modules[lang] = self._select(lang, "labels.txt").module
        return self._label_modules[lang]

    def _state(self, name: str, lang: str) -> str:
        return str(self._labels(lang).states.get(name, self._state_labels.get(name, name)))

    def _action(self, name: str, lang: str) -> str:
        return str(self._labels(lang).actions.get(name, self._action_labels.get(name, name)))

    def _field(self, name: str, lang: str) -> str:
        return str(self._labels(lang).fields.get(name, name))

    def _group(self, view: EventView, lang: str) -> str:
        """The working group's name in ``lang`` as the definition gives it, else the name stored with the group."""
        group = self._groups.get(view.proposal.group)
        return group.names[lang] if group is not None and lang in group.names else view.group_name  # type: ignore[index]

    # ------------------------------------------------------------------ links to the web app
    def proposal_url(self, pid: int | None, **query: int) -> str:
        """The absolute link to a proposal's page (``from``/``to``: the page's view of the differences)."""
        url = f"{self.base_url}/proposals/{pid}"
        return f"{url}?{urlencode(query)}" if query else url

    def _action_url(self, event: Event, proposal: Proposal) -> str:
        """For a notice that asks one particular action: the link to the page that confirms it (GET shows, POST acts)."""
        action = self.definition.workflow.progress.action if event.action == "progress_due" else ""
        return f"{self.base_url}/proposals/{proposal.id}/actions/{action}" if action else ""

    # ------------------------------------------------------------------ one event
    def _reader(self, view: EventView, member: Reader) -> tuple[str, dt.tzinfo, tuple[bool, ...]]:
        """What, besides the event, changes the words: language, zone and the member's part in it."""
        p = view.proposal
        earlier = (view.event.payload or {}).get("earlier_endorsers")
        handle = member.handle
        role = (handle == p.author, handle == view.chair, handle in view.heads,
                handle in view.presiding_heads, isinstance(earlier, list) and handle in earlier)
        key = (handle, member.language, member.timezone)
        reads = self._zones.get(key)
        if reads is None:
            reads = self._zones[key] = (language_of(member), member_zone(member))
        return reads[0], reads[1], role

    def _earlier(self, view: EventView, lang: str) -> dict[str, Any] | None:
        """For a head who endorsed the previous round's text: what changed since, in brief (None if unknown)."""
        ev, p = view.event, view.proposal
        payload = ev.payload or {}
        try:
            change = ChangeSummary.from_dict(payload["text_change"])
        except (KeyError, TypeError, ValueError):
            log.warning("event %s names earlier endorsers but no readable text change", ev.id)
            return None
        return {
            "from": change.from_version,
            "to": change.to_version,
            "added": change.added,
            "removed": change.removed,
            "changed": change.changed,
            "round": int(payload.get("round", p.round)) - 1,
            "lines": [
                {"sign": line.sign, "field": line.field, "field_label": self._field(line.field, lang), "text": line.text}
                for line in change.first
            ],
            "diff_url": self.proposal_url(p.id, **{"from": change.from_version, "to": change.to_version}),
        }

    def _moments(self, view: EventView) -> dict[str, dt.datetime | None]:
        """The moments a mail about the event shows in the reader's zone, None where there is none."""
        deadline = self._deadline(view)
        return {
            "at": view.event.at, "deadline": deadline, "deadline_day": deadline,
            "due": _parse_time((view.event.payload or {}).get("due")),
        }

    @staticmethod
    def _zoned(moments: dict[str, dt.datetime | None], lang: str, tz: dt.tzinfo) -> dict[str, str]:
        """``moments`` as the reader reads them ("" where there is none)."""
        return {
            name: "" if moment is None else (format_day if name == "deadline_day" else format_when)(moment, lang, tz)
            for name, moment in moments.items()
        }

    def _event_context(
        self, view: EventView, lang: str, role: tuple[bool, ...], zoned: dict[str, str]
    ) -> dict[str, Any]:
        """The variables of the event templates; nothing in them depends on the reader but ``role`` and ``zoned``."""
        base = self._event_base(view, lang)
        return {
            **base.ctx, **zoned,
            "is_author": role[0],
            "is_chair": role[1],
            "is_head": role[2],
            "is_presiding": role[3],
            "is_earlier_endorser": role[4],
            "earlier": base.earlier if role[4] else None,
        }

    def _event_base(self, view: EventView, lang: str) -> _Base:
        """The variables of the event templates that are the same for every reader in ``lang`` (kept per event)."""
        key = (view.event.id, lang)
        found = self._bases.get(key) if view.event.id is not None else None
        if found is not None:
            return found
        ev, p = view.event, view.proposal
        payload = ev.payload or {}
        percent = payload.get("percent")
        level = payload.get("level")
        base = {
            "lang": lang,
            "forum": self.definition.forum.name_in(lang),
            "forum_key": self.forum_key,
            "pid": p.id,
            "url": self.proposal_url(p.id),
            "action_url": self._action_url(ev, p),
            "title": p.title,
            "group": self._group(view, lang),
            "actor": self._labels(lang).system if ev.actor == SYSTEM else view.actor_name,
            "by_hand": ev.actor != SYSTEM,  # a notice a member sent from the proposal's page (a reminder)
            "action_label": self._action(ev.action, lang),
            "state": self._state(ev.to_state, lang),
            "from_state": self._state(ev.from_state, lang) if ev.from_state else "",
            "comment": ev.comment,
            "percent": format_percent(percent / 100, locale=lang) if isinstance(percent, int) else "",
            "offset": _days(payload.get("offset_days"), lang),
            "level": level if isinstance(level, int) else "",
            "round": payload.get("round", p.round),
            "region": region_label(str(payload["region"]), lang) if payload.get("region") else "",
            "from_region": region_label(str(payload["from_region"]), lang) if payload.get("from_region") else "",
            "to_region": region_label(str(payload["to_region"]), lang) if payload.get("to_region") else "",
            "text_version": payload.get("text_version", p.text_version),
        }
        version = base["text_version"]
        # The differences from the text before, on the proposal's page (an edit's mail points there).
        base["changes_url"] = (
            self.proposal_url(p.id, **{"from": version - 1, "to": version}) if isinstance(version, int) and version > 1
            else base["url"]
        )
        found = _Base(base, self._earlier(view, lang) if payload.get("earlier_endorsers") else None, self._moments(view))
        if view.event.id is not None:
            if len(self._bases) >= LAYOUTS_KEPT:
                self._bases.pop(next(iter(self._bases)))
            self._bases[key] = found
        return found

    def _said(self, view: EventView, member: Reader) -> _Said:
        """The event's context and sentences for this kind of reader, rendered once per kind."""
        lang, tz, role = self._reader(view, member)
        return self._said_as(view, lang, tz, role)

    def _said_as(self, view: EventView, lang: str, tz: dt.tzinfo, role: tuple[bool, ...]) -> _Said:
        key = (view.event.id, lang, tz, role)
        said = self._said_cache.get(key) if view.event.id is not None else None
        if said is None:
            ctx = self._event_context(view, lang, role, self._zoned(self._event_base(view, lang).moments, lang, tz))
            template = self._select(lang, f"events/{view.event.action}.txt", "events/_generic.txt")
            module = prepared.module(template, ctx)
            said = _Said(
                ctx=ctx,
                subject=module["subject"],
                lead=_tidy(module["lead"]),
                todo=_tidy(module.get("todo", "")),
            )
            if len(self._said_cache) >= 2048:  # deliveries of one event come together: old entries are done
                self._said_cache.pop(next(iter(self._said_cache)))
            if view.event.id is not None:  # ids are unique in one database; a Renderer serves one
                self._said_cache[key] = said
        return said

    def context(self, view: EventView, member: Reader) -> dict[str, Any]:
        """Every variable the message layouts may use, for ``member``."""
        return self._layout_context(self._said(view, member), member)

    def _layout_context(self, said: _Said, member: Reader) -> dict[str, Any]:
        subject = header_text(f"[{self.forum_key}] {said.headline}")
        return {
            **said.ctx, "name": member.name, "preference": member.notify,
            "subject": subject, "lead": said.lead, "todo": said.todo,
        }

    def _deadline(self, view: EventView) -> dt.datetime | None:
        """The deadline the event is about: the notice's, the one its state entry set, or the proposal's."""
        ev, p = view.event, view.proposal
        named = _parse_time((ev.payload or {}).get("deadline"))
        if named is not None:
            return named
        if ev.from_state != ev.to_state:
            sla = self._slas.get(ev.to_state)
            return ev.at + dt.timedelta(days=sla) if sla else None
        return p.deadline if p.state == ev.to_state else None

    def event_message(self, view: EventView, member: Reader) -> Rendered:
        """The mail telling ``member`` about one event."""
        return self.event_layout(view, member).fill(member.name)

    def event_layout(self, view: EventView, member: Reader) -> Layout:
        """The mail about one event for readers like ``member``: rendered once per kind of reader, then kept."""
        lang, tz, role = self._reader(view, member)
        role = self._role_read(view, lang, role)
        texts = (self._select(lang, "message.txt"), self._select(lang, "message.html"))
        named = self._named.get((self.env, lang))
        if named is None:  # the name is a hole in the layouts unless it is empty or read as a value
            named = self._named[(self.env, lang)] = any(
                "name" in prepared.usage(t).values or not prepared.usage(t).followed for t in texts
            )
        name = member.name
        key = (view.event.id, lang, tz, role, member.notify, name if named else bool(name))
        layout = self._layouts.get(key) if view.event.id is not None else None
        if layout is None:
            self.layouts_made += 1
            layout = self._layout_in_zone(view, member, lang, tz, role, key, texts)
            if layout is None:
                ctx = self._layout_context(self._said_as(view, lang, tz, role), member)
                ics = self._ics(view, ctx) if view.event.action == "remind" else None
                layout = Layout.of(ctx["subject"], prepared.render(texts[0], ctx), prepared.render(texts[1], ctx), lang, ics)
            if view.event.id is not None:
                if len(self._layouts) >= LAYOUTS_KEPT:
                    self._layouts.popitem(last=False)
                self._layouts[key] = layout
        return layout

    def _layout_in_zone(
        self, view: EventView, member: Reader, lang: str, tz: dt.tzinfo, role: tuple[bool, ...], key: tuple[Any, ...],
        texts: tuple[Template, Template],
    ) -> Layout | None:
        """The layout for readers in ``tz`` made from the one rendered for every zone; None where there is none.

        A moment tidied in a sentence is the moment tidied, when it neither starts nor ends with a space: so each mark
        takes its moment's text, escaped in the HTML, and each tidied mark the tidied text.
        """
        if view.event.id is None or view.event.action == "remind" or not self._zone_free_templates(view, lang):
            return None
        zoned = self._zoned(self._event_base(view, lang).moments, lang, tz)
        if any(text != text.strip() for text in zoned.values()):
            return None
        shared_key = (*key[:2], *key[3:], tuple(bool(text) for text in zoned.values()))
        shared = self._zoneless.get(shared_key)
        if shared is None:
            shared = self._zoneless[shared_key] = self._layout_for_every_zone(view, member, lang, role, zoned, texts)
            if len(self._zoneless) > LAYOUTS_KEPT:
                self._zoneless.popitem(last=False)
        if not isinstance(shared, Layout):
            return None
        put = [(mark, text) for name, text in zoned.items() if text for mark, text in
               ((_MARKS[name], text), (_TIDY_MARKS[name], _tidy(text)))]
        escaped = [(mark, str(escape(text))) for mark, text in put]
        return Layout(shared.subject, _put(shared.text, put), _put(shared.html, escaped), lang)

    def _layout_for_every_zone(
        self, view: EventView, member: Reader, lang: str, role: tuple[bool, ...], zoned: dict[str, str],
        texts: tuple[Template, Template],
    ) -> Layout | object:
        """The layout with a mark for each moment (and a tidied mark in the sentences); ``_NO_LAYOUT`` if the
        subject holds a moment."""
        marks = {name: _MARKS[name] if text else "" for name, text in zoned.items()}
        ctx = self._event_context(view, lang, role, marks)
        template = self._select(lang, f"events/{view.event.action}.txt", "events/_generic.txt")
        module = prepared.module(template, ctx)
        tidied = [_tidy(module["lead"]), _tidy(module.get("todo", ""))]
        for name in ZONED:
            tidied = [text.replace(_MARKS[name], _TIDY_MARKS[name]) for text in tidied]
        said = _Said(ctx=ctx, subject=module["subject"], lead=tidied[0], todo=tidied[1])
        layout_ctx = self._layout_context(said, member)
        if "\ue001" in layout_ctx["subject"]:
            return _NO_LAYOUT
        return Layout.of(
            layout_ctx["subject"], prepared.render(texts[0], layout_ctx), prepared.render(texts[1], layout_ctx), lang
        )

    def _usages(self, view: EventView, lang: str) -> list[prepared.Usage]:
        """What the templates of a mail about the event (its own text, the text and HTML layouts) read and write."""
        templates = (
            self._select(lang, f"events/{view.event.action}.txt", "events/_generic.txt"),
            self._select(lang, "message.txt"),
            self._select(lang, "message.html"),
        )
        return [prepared.usage(t) for t in templates]

    def _zone_free_templates(self, view: EventView, lang: str) -> bool:
        """Whether the templates of a mail about the event only write zoned moments out or test them (kept)."""
        key = (self.env, lang, view.event.action)
        free = self._zone_free.get(key)
        if free is None:
            uses = self._usages(view, lang)
            free = self._zone_free[key] = all(u.followed and not set(ZONED) & set(u.values) for u in uses)
        return free

    def direct_layout(self, view: EventView, member: Reader) -> Layout:
        """The mail about one event for ``member``, rendered by jinja2 with every value (what the tests compare to)."""
        ctx = self.context(view, member)
        lang = ctx["lang"]
        text = self._select(lang, "message.txt").render(ctx)
        html = self._select(lang, "message.html").render(ctx)
        ics = self._ics(view, ctx) if view.event.action == "remind" else None
        return Layout(ctx["subject"], (text,), (html,), lang, ics)

    def _role_read(self, view: EventView, lang: str, role: tuple[bool, ...]) -> tuple[bool, ...]:
        """``role`` with False for the flags that neither the event's template nor the layouts read."""
        key = (self.env, lang, view.event.action)
        read = self._roles_read.get(key)
        if read is None:
            uses = self._usages(view, lang)
            read = frozenset(ROLE_FLAGS) if not all(u.followed for u in uses) else frozenset().union(*(u.reads for u in uses))
            read |= {"is_earlier_endorser"}  # it also decides whether ``earlier`` is given
            self._roles_read[key] = read
        return tuple(flag and name in read for flag, name in zip(role, ROLE_FLAGS, strict=True))

    def _ics(self, view: EventView, ctx: Mapping[str, Any]) -> bytes | None:
        """A calendar entry for the deadline a reminder is about (same UID for every reminder of it)."""
        deadline = self._deadline(view)
        if deadline is None:
            return None
        p = view.proposal
        cal = Calendar()
        cal.add("prodid", "-//forumflow//notifications//EN")
        cal.add("version", "2.0")
        cal.add("method", "PUBLISH")
        entry = CalendarEvent()
        entry.add("uid", f"deadline-{p.id}-{deadline:%Y%m%dT%H%M%SZ}@{self.forum_key}.forumflow")
        entry.add("dtstamp", view.event.at)
        # A moment, not a span: RFC 5545 (3.6.1) lets a VEVENT with a DATE-TIME start and no DTEND or DURATION
        # end when it starts; a DTEND equal to DTSTART would be invalid (DTEND must be later).
        entry.add("dtstart", deadline)
        entry.add("summary", ctx["subject"])
        entry.add("description", ctx["lead"])
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", ctx["subject"])
        alarm.add("trigger", dt.timedelta(hours=-24))
        entry.add_component(alarm)
        cal.add_component(entry)
        return bytes(cal.to_ical())

    # ------------------------------------------------------------------ digests
    def digest_message(self, member: Reader, views: Sequence[EventView], *, day: dt.date) -> Rendered:
        """One member's daily digest of ``views`` (oldest first)."""
        lang, tz = language_of(member), member_zone(member)
        items = []
        for view in views:
            said = self._said(view, member)
            items.append({
                "headline": said.headline, "lead": said.lead, "at": said.ctx["at"], "comment": said.ctx["comment"],
                "pid": said.ctx["pid"], "text_version": said.ctx["text_version"], "url": said.ctx["url"],
            })
        ctx_digest: dict[str, Any] = {
            "lang": lang,
            "forum": self.definition.forum.name_in(lang),
            "forum_key": self.forum_key,
            "name": member.name,
            "day": format_date(day, "long", locale=lang),
            "count": len(items),
            "items": items,
            "version_label": str(self._labels(lang).text_version),
            "zone": format_datetime(dt.datetime.combine(day, dt.time(12), tzinfo=tz), "zzzz", tzinfo=tz, locale=lang),
        }
        module = self._select(lang, "digest.txt").make_module(ctx_digest)
        subject = header_text(f"[{self.forum_key}] {str(module.subject).strip()}")  # type: ignore[attr-defined]
        text = str(module).lstrip()
        html = self._select(lang, "digest.html").render(ctx_digest | {"subject": subject})
        return Rendered(subject, text, html, lang)


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _days(value: Any, lang: str) -> str:
    if not isinstance(value, int):
        return ""
    return format_timedelta(dt.timedelta(days=value), granularity="day", threshold=10_000, locale=lang)
