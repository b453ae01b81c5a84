"""The forum definition: one declarative file describing a forum and its workflow.

The loader validates structure (pydantic) and cross references (this module) and reports the
first problem as one line: ``<file>: <key.path>: <reason>``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import reprlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config.iso import is_country, subdivision_name

if TYPE_CHECKING:  # PyYAML is imported when a file is parsed, not when a cached definition is used
    import yaml

Language = Literal["en", "ru", "zh"]
MemberRole = Literal["head_of_region", "secretariat", "member"]
# Who may take an action, each with its scope:
#   author          the proposal's author
#   group_chair     the chair of the proposal's working group
#   group_member    any member of the proposal's working group
#   head_of_region  a head of a participating region (acts for their own region only)
#   presiding_head  the head of the region whose presiding term covers the moment of the action
#   secretariat     a member with the secretariat role
#   system          the scheduler (reminders, silence procedure, hand-over)
ActorRole = Literal[
    "author", "group_chair", "group_member", "head_of_region", "presiding_head", "secretariat", "system"
]
EscalationTarget = Literal["group_chair", "presiding_head", "secretariat"]
# Who hears about an event, as used in the `notifications` mapping of a definition (event action ->
# list of targets). A target is one of these names or "@handle" for one member:
#   author           the proposal's author
#   group_chair      the chair of the proposal's working group
#   group_members    every member of the proposal's working group
#   heads_of_region  every head of a participating region
#   presiding_head   the head of the region presiding when the event happened
#   secretariat      every member with the secretariat role
#   recipients       the handles the scheduler named in the notice (notices only)
#   earlier_endorsers  heads who endorsed the previous round's text, when a new round opens (asked again)
# The actor of an event never hears about their own action. A key replaces the built-in rule for
# that action; an empty list silences it.
NOTIFY_TARGETS = (
    "author", "group_chair", "group_members", "heads_of_region", "presiding_head", "secretariat", "recipients",
    "earlier_endorsers",
)
# Notices the scheduled review records (besides the hand-over, named by workflow.handover_action).
NOTICE_ACTIONS = ("remind", "escalate", "progress_due")
# The built-in operation that writes a new text version of a draft (not a workflow action).
EDIT_ACTION = "edit"

# The scheduler's own actor: no member may carry this handle, and no interface may act as it.
SYSTEM_HANDLE = "system"
# Aliases may not make a YAML document larger than this many nodes once expanded ("billion laughs").
MAX_YAML_NODES = 200_000

_HANDLE = re.compile(r"^[a-z][a-z0-9_.-]{1,39}$")
_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")

Handle = Annotated[str, Field(pattern=_HANDLE.pattern)]
Key = Annotated[str, Field(pattern=_KEY.pattern)]


class ForumDefinitionError(ValueError):
    """A forum definition file is unreadable or invalid; the message is one line."""

    def __init__(self, file: Path | str, key: str, reason: str) -> None:
        self.file, self.key, self.reason = str(file), key, reason
        super().__init__(f"{file}: {key}: {reason}" if key else f"{file}: {reason}")


_SHORT = reprlib.Repr()  # keyword arguments need Python 3.12
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = 60, 60, 4, 4, 2


def short(value: Any) -> str:
    """A bounded repr of ``value`` for messages: never the expansion of a huge or nested value."""
    return _SHORT.repr(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _other_languages(value: dict[str, str]) -> dict[str, str]:
    """``names`` gives a name in the languages other than English (which is ``name``)."""
    if "en" in value:
        raise ValueError("the English name is `name`; `names` gives the other languages")
    return value


class _Named:
    """Something with an English ``name`` and its ``names`` in other languages."""

    name: str
    names: dict[Language, str]

    def name_in(self, language: str) -> str:
        """The name in ``language``, else the English name."""
        return self.names.get(language, self.name)  # type: ignore[call-overload]


class ForumInfo(_Named, _Strict):
    """Short key of the forum, its name, and its name in other languages (as members read it)."""

    key: Key
    name: str = Field(min_length=1)
    names: dict[Language, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)

    check_names = field_validator("names")(_other_languages)


class PresidingTerm(_Strict):
    """A region chairs the forum from ``start`` to ``end`` inclusive (dates in UTC).

    ``deputy`` takes the presiding region's steps that the no-self rule bars its head from: approving
    a proposal the head wrote.
    """

    region: str
    start: dt.date
    end: dt.date
    deputy: Handle | None = None


class WorkingGroup(_Named, _Strict):
    """An ad hoc working group: key, name, its name in other languages, chair, deputy chair and members (handles).

    ``name`` is the English (default) name; ``names`` gives it in the other languages members read, as
    members' names are given in their own language. ``deputy_chair`` takes the chair's steps that the
    no-self rule bars the chair from: recommending a proposal the chair wrote.
    """

    key: Key
    name: str = Field(min_length=1)
    names: dict[Language, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    chair: Handle
    deputy_chair: Handle | None = None
    members: list[Handle] = Field(min_length=1)

    check_names = field_validator("names")(_other_languages)


class Member(_Strict):
    """A person who takes part: identity, contact, language, time zone, region and roles."""

    handle: Handle
    name: str = Field(min_length=1)
    email: str
    language: Language = "en"
    timezone: str = "UTC"
    region: str | None = None
    roles: list[MemberRole] = Field(default_factory=lambda: list[MemberRole](["member"]))
    notify: Literal["immediate", "digest", "off"] = "immediate"

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value) or any(c in value for c in "\r\n<>,;\" "):
            raise ValueError(f"invalid e-mail address {short(value)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {short(value)}") from None
        return value


class StateDef(_Strict):
    """A workflow state: SLA in days from entry, reminder offsets in days before the deadline."""

    name: Key
    label: str = ""
    sla_days: int | None = Field(default=None, gt=0)
    reminders: list[int] = Field(default_factory=list)
    final: bool = False

    @field_validator("reminders")
    @classmethod
    def _reminders(cls, value: list[int]) -> list[int]:
        if any(v <= 0 for v in value):
            raise ValueError("reminder offsets are days before the deadline and must be positive")
        if len(set(value)) != len(value):
            raise ValueError("reminder offsets must be distinct")
        return sorted(value, reverse=True)


class ActionDef(_Strict):
    """An action: from which states, to which state, and who may take it."""

    name: Key
    label: str = ""
    source: list[Key]
    dest: Key
    roles: list[ActorRole] = Field(min_length=1)
    not_author: bool = False
    comment_required: bool = False
    percent: bool = False

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class EscalationStep(_Strict):
    """Escalate to ``to`` once the deadline has been passed by ``after_days``."""

    to: EscalationTarget
    after_days: int = Field(ge=0)


class EndorsementRound(_Strict):
    """Which state is the endorsement round and which actions vote, agree, or close it by silence."""

    state: Key
    endorse: Key
    object: Key
    consensus: Key
    silence: Key


class ProgressDef(_Strict):
    """Progress reporting: in ``state`` the ``action`` is due every ``cadence_days``."""

    state: Key
    action: Key
    cadence_days: int = Field(gt=0)
    reminder_days: int = Field(default=7, ge=0)


class Workflow(_Strict):
    """The lifecycle as data: states, actions, round, progress and escalation rules."""

    initial: Key
    states: list[StateDef] = Field(min_length=2)
    actions: list[ActionDef] = Field(min_length=1)
    endorsement: EndorsementRound
    progress: ProgressDef
    escalation: list[EscalationStep] = Field(default_factory=list)
    handover_action: Key = "handover"

    def state(self, name: str) -> StateDef:
        """The state called ``name``."""
        return next(s for s in self.states if s.name == name)

    def action(self, name: str) -> ActionDef:
        """The action called ``name``."""
        return next(a for a in self.actions if a.name == name)

    @property
    def state_names(self) -> list[str]:
        """All state names in definition order."""
        return [s.name for s in self.states]


class ForumDefinition(_Strict):
    """A whole forum: its people, regions, groups, terms and workflow."""

    forum: ForumInfo
    member_states: list[str] = Field(min_length=1)
    regions: list[str] = Field(min_length=1)
    presiding_terms: list[PresidingTerm] = Field(min_length=1)
    working_groups: list[WorkingGroup] = Field(min_length=1)
    members: list[Member] = Field(min_length=1)
    workflow: Workflow
    notifications: dict[str, list[str]] = Field(default_factory=dict)

    def member(self, handle: str) -> Member | None:
        """The member with ``handle``, if any."""
        return next((m for m in self.members if m.handle == handle), None)

    def region_name(self, code: str) -> str:
        """The ISO 3166-2 name of a region code."""
        return subdivision_name(code) or code

    def presiding_term(self, day: dt.date) -> PresidingTerm | None:
        """The presiding term in force on ``day`` (UTC), if any."""
        return next((t for t in self.presiding_terms if t.start <= day <= t.end), None)


def _loc(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if part == "[key]":  # pydantic's marker for a mapping's key: the key itself is already in the path
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _dupes(values: list[str]) -> str | None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            return v
        seen.add(v)
    return None


def _check(defn: ForumDefinition) -> tuple[str, str] | None:
    """Cross-reference checks; returns (key path, reason) of the first problem."""
    for i, code in enumerate(defn.member_states):
        if not is_country(code):
            return f"member_states[{i}]", f"unknown ISO 3166-1 country code {code!r}"
    if d := _dupes(defn.member_states):
        return "member_states", f"duplicate member state {d!r}"
    for i, code in enumerate(defn.regions):
        if subdivision_name(code) is None:
            return f"regions[{i}]", f"unknown ISO 3166-2 region code {code!r}"
        if code.split("-")[0] not in defn.member_states:
            return f"regions[{i}]", f"region {code!r} is not in a member state"
    if d := _dupes(defn.regions):
        return "regions", f"duplicate region {d!r}"

    if d := _dupes([m.handle for m in defn.members]):
        i = [m.handle for m in defn.members].index(d, [m.handle for m in defn.members].index(d) + 1)
        return f"members[{i}].handle", f"duplicate handle {d!r}"
    if d := _dupes([m.email.lower() for m in defn.members]):
        return "members", f"duplicate e-mail address {d!r}"
    for i, m in enumerate(defn.members):
        if m.handle == SYSTEM_HANDLE:
            return f"members[{i}].handle", f"{SYSTEM_HANDLE!r} is reserved for the scheduled review and cannot be a member"
        if m.region is not None and m.region not in defn.regions:
            return f"members[{i}].region", f"unknown region {m.region!r} (not a participating region)"
        if "head_of_region" in m.roles and m.region is None:
            return f"members[{i}].roles", f"head of region {m.handle!r} has no region"
    handles = {m.handle for m in defn.members}
    heads = {m.region for m in defn.members if "head_of_region" in m.roles}

    terms = sorted(enumerate(defn.presiding_terms), key=lambda it: it[1].start)
    for i, t in enumerate(defn.presiding_terms):
        if t.region not in defn.regions:
            return f"presiding_terms[{i}].region", f"unknown region {t.region!r} (not a participating region)"
        if t.end < t.start:
            return f"presiding_terms[{i}]", "term ends before it starts"
        if t.region not in heads:
            return f"presiding_terms[{i}].region", f"presiding region {t.region!r} has no head of region member"
        if t.deputy is not None:
            if t.deputy not in handles:
                return f"presiding_terms[{i}].deputy", f"unknown member {t.deputy!r}"
            if t.deputy in _heads_of(defn, t.region):
                return f"presiding_terms[{i}].deputy", f"deputy {t.deputy!r} is a head of {t.region} already"
    for (_, a), (j, b) in itertools.pairwise(terms):
        if b.start <= a.end:
            return f"presiding_terms[{j}]", f"term of {b.region} overlaps the term of {a.region}"

    if d := _dupes([g.key for g in defn.working_groups]):
        return "working_groups", f"duplicate working group key {d!r}"
    for i, g in enumerate(defn.working_groups):
        for j, h in enumerate(g.members):
            if h not in handles:
                return f"working_groups[{i}].members[{j}]", f"unknown member {h!r}"
        if g.chair not in handles:
            return f"working_groups[{i}].chair", f"unknown member {g.chair!r}"
        if g.chair not in g.members:
            return f"working_groups[{i}].chair", f"chair {g.chair!r} is not a member of the group"
        if d := _dupes(g.members):
            return f"working_groups[{i}].members", f"duplicate member {d!r}"
        if g.deputy_chair is not None:
            if g.deputy_chair not in g.members:
                return f"working_groups[{i}].deputy_chair", f"deputy chair {g.deputy_chair!r} is not a member of the group"
            if g.deputy_chair == g.chair:
                return f"working_groups[{i}].deputy_chair", "the deputy chair must be another member than the chair"
    return _check_workflow(defn.workflow) or _check_holders(defn) or _check_notifications(defn, handles)


def _heads_of(defn: ForumDefinition, region: str) -> set[str]:
    """Handles of the heads of ``region``."""
    return {m.handle for m in defn.members if "head_of_region" in m.roles and m.region == region}


def _possible_holders(
    defn: ForumDefinition, action: ActionDef, group: WorkingGroup, author: str, term: PresidingTerm | None
) -> set[str]:
    """Who could take ``action`` on a proposal by ``author`` in ``group`` during ``term`` (as the lifecycle decides)."""
    who: set[str] = set()
    for role in action.roles:
        if role == "author":
            who.add(author)
        elif role == "group_chair":
            deputy = action.not_author and group.chair == author and group.deputy_chair
            who.add(group.deputy_chair if deputy and group.deputy_chair else group.chair)
        elif role == "group_member":
            who |= set(group.members)
        elif role == "secretariat":
            who |= {m.handle for m in defn.members if "secretariat" in m.roles}
        elif role == "head_of_region":
            who |= {m.handle for m in defn.members if "head_of_region" in m.roles}
        elif role == "presiding_head" and term is not None:
            presiding = _heads_of(defn, term.region)
            who |= presiding
            if action.not_author and author in presiding and term.deputy:
                who.add(term.deputy)
    if action.not_author:
        who.discard(author)
    return who


def _check_holders(defn: ForumDefinition) -> tuple[str, str] | None:
    """Every action people take has someone to take it, whoever of a group's members is the author."""
    for i, action in enumerate(defn.workflow.actions):
        if SYSTEM_HANDLE in action.roles:
            continue
        terms: list[tuple[int, PresidingTerm | None]] = (
            list(enumerate(defn.presiding_terms)) if "presiding_head" in action.roles else [(-1, None)]
        )
        for g_index, group in enumerate(defn.working_groups):
            for author in group.members:
                for t_index, term in terms:
                    if _possible_holders(defn, action, group, author, term):
                        continue
                    if "group_chair" in action.roles and author == group.chair:
                        return (
                            f"working_groups[{g_index}]",
                            f"nobody could {action.name} a proposal written by the chair {author!r}: "
                            "name a deputy_chair (another member of the group)",
                        )
                    if term is not None and author in _heads_of(defn, term.region):
                        return (
                            f"presiding_terms[{t_index}]",
                            f"nobody could {action.name} a proposal written by {author!r}, head of the presiding region "
                            f"{term.region} and member of working group {group.key}: name a deputy for the term",
                        )
                    return (
                        f"workflow.actions[{i}].roles",
                        f"nobody could {action.name} a proposal written by {author!r} in working group {group.key}",
                    )
    return None


def _check_notifications(defn: ForumDefinition, handles: set[str]) -> tuple[str, str] | None:
    """The `notifications` mapping names known events and known targets."""
    wf = defn.workflow
    notices = {*NOTICE_ACTIONS, wf.handover_action}
    events = {"create", EDIT_ACTION, *notices, *(a.name for a in wf.actions)}
    for key, targets in defn.notifications.items():
        if key not in events:
            return f"notifications.{key}", f"unknown event {key!r}; events: {', '.join(sorted(events))}"
        for i, target in enumerate(targets):
            if target.startswith("@"):
                if target[1:] not in handles:
                    return f"notifications.{key}[{i}]", f"unknown member {target[1:]!r}"
            elif target not in NOTIFY_TARGETS:
                return f"notifications.{key}[{i}]", f"unknown target {target!r}; targets: {', '.join(NOTIFY_TARGETS)} or @handle"
            elif target == "recipients" and key not in notices:
                return f"notifications.{key}[{i}]", "'recipients' applies only to notices of the scheduled review"
        if (d := _dupes(targets)) is not None:
            return f"notifications.{key}", f"duplicate target {d!r}"
    return None


def _check_workflow(wf: Workflow) -> tuple[str, str] | None:
    names = wf.state_names
    if d := _dupes(names):
        return "workflow.states", f"duplicate state {d!r}"
    if wf.initial not in names:
        return "workflow.initial", f"unknown state {wf.initial!r}"
    if d := _dupes([a.name for a in wf.actions]):
        return "workflow.actions", f"duplicate action {d!r}"
    actions = {a.name: a for a in wf.actions}
    for i, a in enumerate(wf.actions):
        for j, s in enumerate(a.source):
            if s not in names:
                return f"workflow.actions[{i}].source[{j}]", f"action {a.name!r} names unknown state {s!r}"
            if wf.state(s).final:
                return f"workflow.actions[{i}].source[{j}]", f"action {a.name!r} leaves final state {s!r}"
        if a.dest not in names:
            return f"workflow.actions[{i}].dest", f"action {a.name!r} names unknown state {a.dest!r}"
        if SYSTEM_HANDLE in a.roles and len(a.roles) > 1:
            return f"workflow.actions[{i}].roles", "an action of the system cannot be taken by anyone else too"
    for i, st in enumerate(wf.states):
        if st.reminders and st.sla_days is None:
            return f"workflow.states[{i}].reminders", f"state {st.name!r} has reminders but no sla_days"
        if st.reminders and st.sla_days is not None and max(st.reminders) >= st.sla_days:
            return f"workflow.states[{i}].reminders", "a reminder offset must be shorter than the SLA"
    rnd = wf.endorsement
    if rnd.state not in names:
        return "workflow.endorsement.state", f"unknown state {rnd.state!r}"
    for key in ("endorse", "object", "consensus", "silence"):
        name = getattr(rnd, key)
        if name not in actions:
            return f"workflow.endorsement.{key}", f"unknown action {name!r}"
        if rnd.state not in actions[name].source:
            return f"workflow.endorsement.{key}", f"action {name!r} does not start from {rnd.state!r}"
    if actions[rnd.endorse].dest != rnd.state:
        return "workflow.endorsement.endorse", f"action {rnd.endorse!r} must stay in {rnd.state!r}"
    for key in ("consensus", "silence"):
        if actions[getattr(rnd, key)].roles != ["system"]:
            return f"workflow.endorsement.{key}", "consensus and silence actions must be taken by the system only"
    if wf.progress.state not in names:
        return "workflow.progress.state", f"unknown state {wf.progress.state!r}"
    if wf.progress.action not in actions:
        return "workflow.progress.action", f"unknown action {wf.progress.action!r}"
    if wf.handover_action in actions:
        return "workflow.handover_action", f"{wf.handover_action!r} is reserved for the term hand-over notice"
    for i, a in enumerate(wf.actions):
        if SYSTEM_HANDLE in a.roles and a.name not in (rnd.consensus, rnd.silence):
            return f"workflow.actions[{i}].roles", (
                f"the system takes only the round's {rnd.consensus!r} and {rnd.silence!r}: nobody would take {a.name!r}"
            )
    if EDIT_ACTION in actions:
        i = [a.name for a in wf.actions].index(EDIT_ACTION)
        return f"workflow.actions[{i}].name", f"{EDIT_ACTION!r} is reserved for editing a draft's text"
    return _check_graph(wf)


def _check_graph(wf: Workflow) -> tuple[str, str] | None:
    """Every state can be reached, and a final state can be reached from every state (no dead end, no closed loop)."""
    leads: dict[str, set[str]] = {name: set() for name in wf.state_names}
    for a in wf.actions:
        for s in a.source:
            leads[s].add(a.dest)
    reached, todo = {wf.initial}, [wf.initial]
    while todo:
        for nxt in leads[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    for i, st in enumerate(wf.states):
        if st.name not in reached:
            return f"workflow.states[{i}]", f"state {st.name!r} cannot be reached from {wf.initial!r}"
    for i, st in enumerate(wf.states):
        if not st.final and not leads[st.name] - {st.name}:
            return f"workflow.states[{i}]", f"state {st.name!r} is not final and no action leads out of it"
    ends = {s.name for s in wf.states if s.final}
    grew = True
    while grew:
        grew = False
        for name, dests in leads.items():
            if name not in ends and dests & ends:
                ends.add(name)
                grew = True
    stuck = [i for i, st in enumerate(wf.states) if st.name not in ends]
    if stuck:
        loop = ", ".join(repr(wf.states[i].name) for i in stuck)
        return f"workflow.states[{stuck[0]}]", f"no final state can be reached from {loop}: a loop with no exit"
    return None


def parse_definition(data: Any, source: Path | str = "<definition>") -> ForumDefinition:
    """Validate already-parsed data as a forum definition; raise ForumDefinitionError on the first problem."""
    if not isinstance(data, dict):
        raise ForumDefinitionError(source, "", "the file must contain a mapping at the top level")
    try:
        defn = ForumDefinition.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "literal_error":
            msg = f"{short(err.get('input'))} is not allowed: {msg}"
        raise ForumDefinitionError(source, _loc(err["loc"]), msg) from None
    problem = _check(defn)
    if problem is not None:
        raise ForumDefinitionError(source, *problem)
    return defn


def load_definition(path: Path | str, *, cache_dir: Path | None = None) -> ForumDefinition:
    """Read and validate a forum definition file (YAML).

    With ``cache_dir`` (an existing folder: the data dir), the validated definition is kept there
    (``DEFINITION_CACHE``) under a key made of the file's bytes and this loader's code, and taken from there
    while both are unchanged: a command then skips parsing the YAML, validating and the cross-reference checks.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ForumDefinitionError(path, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ForumDefinitionError(path, "", f"cannot read file: {exc}") from None
    key = _cache_key(raw) if cache_dir is not None else b""
    if cache_dir is not None and (cached := _cached(cache_dir, key)) is not None:
        return cached
    import yaml

    try:
        try:
            data = _load_yaml(text, path, getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml's is 10x faster
        except yaml.YAMLError:
            data = _load_yaml(text, path, yaml.SafeLoader)  # the pure-Python parser's words and line for the error
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ForumDefinitionError(path, where, f"invalid YAML: {problem}") from None
    except RecursionError:
        raise ForumDefinitionError(path, "", "invalid YAML: nested too deeply") from None
    definition = parse_definition(data, path)
    if cache_dir is not None:
        _keep(cache_dir, key, definition)
    return definition


# The file in the data dir that keeps the last validated definition (see load_definition).
DEFINITION_CACHE = "definition-cache.pickle"


def _cache_key(raw: bytes) -> bytes:
    """A digest of the definition's bytes and of what judged them: this module, the ISO codes, pydantic, Python."""
    import hashlib
    import sys

    import pydantic

    from config import iso

    digest = hashlib.sha256(raw)
    for source in (__file__, iso.__file__, iso.database_path("3166-1"), iso.database_path("3166-2")):
        try:
            st = Path(source).stat()
        except (OSError, ModuleNotFoundError):
            digest.update(b"missing")
            continue
        digest.update(f"{source}:{st.st_size}:{st.st_mtime_ns}".encode())
    digest.update(f"{pydantic.VERSION} {sys.version}".encode())
    return digest.digest()


def _cached(cache_dir: Path, key: bytes) -> ForumDefinition | None:
    """The definition kept under ``key`` in ``cache_dir``, or None (none kept, another key, or unreadable).

    Kept as a pickle, which restores the models without validating them again (and so without building
    their validators: ``defer_build``); the unpickler lets it name nothing but this module's models and
    ``datetime.date``, so a file planted there cannot run code.
    """
    import io
    import pickle

    class DefinitionUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module == __name__ and isinstance(cls := globals().get(name), type) and issubclass(cls, BaseModel):
                return cls
            if (module, name) == ("datetime", "date"):
                return dt.date
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a forum definition")

    try:
        kept = (cache_dir / DEFINITION_CACHE).read_bytes()
        if kept[: len(key)] != key:
            return None
        definition = DefinitionUnpickler(io.BytesIO(kept[len(key) :])).load()
    except Exception:  # unreadable, truncated or foreign: the file is parsed instead
        return None
    return definition if isinstance(definition, ForumDefinition) else None


def _keep(cache_dir: Path, key: bytes, definition: ForumDefinition) -> None:
    """Write the validated definition under ``key`` into ``cache_dir`` (atomically; nothing when it cannot)."""
    import os
    import pickle

    if not cache_dir.is_dir():
        return
    partial = cache_dir / f".{DEFINITION_CACHE}.{os.getpid()}.partial"
    try:
        partial.write_bytes(key + pickle.dumps(definition, protocol=5))
        partial.replace(cache_dir / DEFINITION_CACHE)
    except OSError:
        partial.unlink(missing_ok=True)


def _load_yaml(text: str, path: Path, loader_class: type[yaml.SafeLoader]) -> Any:
    """``yaml.safe_load`` that first measures the document with its aliases expanded, refusing a bomb or a loop."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problem = _expansion_problem(node)
        if problem is not None:
            raise ForumDefinitionError(path, "", problem)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expansion_problem(root: yaml.Node) -> str | None:
    """Why the node graph is refused (an alias inside itself, or too large once expanded), or None.

    Sizes are memoised per node, so the count costs one visit per distinct node however far aliases expand.
    """
    size: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if done:
            open_nodes.discard(id(node))
            size[id(node)] = 1 + sum(size[id(c)] for c in children)
            if size[id(node)] > MAX_YAML_NODES:
                return f"invalid YAML: aliases expand the document beyond {MAX_YAML_NODES} nodes"
            continue
        if id(node) in size:
            continue
        if id(node) in open_nodes:
            return "invalid YAML: an alias refers to a node that contains it"
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    import yaml  # already imported by the parse that made the node: a lookup

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
