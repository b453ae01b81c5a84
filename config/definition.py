"""The forum definition: one declarative file describing a forum and its workflow.

The loader validates structure (pydantic) and cross references (this module) and reports the
first problem as one line: ``<file>: <key.path>: <reason>``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ForumInfo(_Strict):
    """Name and short key of the forum."""

    key: Key
    name: str = Field(min_length=1)


class PresidingTerm(_Strict):
    """A region chairs the forum from ``start`` to ``end`` inclusive (dates in UTC)."""

    region: str
    start: dt.date
    end: dt.date


class WorkingGroup(_Strict):
    """An ad hoc working group: key, name, chair and members (handles)."""

    key: Key
    name: str = Field(min_length=1)
    chair: Handle
    members: list[Handle] = Field(min_length=1)


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
            raise ValueError(f"invalid e-mail address {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
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
        sub = pycountry.subdivisions.get(code=code)
        return sub.name if sub is not None else code

    def presiding_term(self, day: dt.date) -> PresidingTerm | None:
        """The presiding term in force on ``day`` (UTC), if any."""
        return next((t for t in self.presiding_terms if t.start <= day <= t.end), None)


def _loc(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
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
        if pycountry.countries.get(alpha_2=code) is None:
            return f"member_states[{i}]", f"unknown ISO 3166-1 country code {code!r}"
    if d := _dupes(defn.member_states):
        return "member_states", f"duplicate member state {d!r}"
    for i, code in enumerate(defn.regions):
        if pycountry.subdivisions.get(code=code) is None:
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
    return _check_workflow(defn.workflow) or _check_notifications(defn, handles)


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
    if EDIT_ACTION in actions:
        i = [a.name for a in wf.actions].index(EDIT_ACTION)
        return f"workflow.actions[{i}].name", f"{EDIT_ACTION!r} is reserved for editing a draft's text"
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
            msg = f"{err.get('input')!r} is not allowed: {msg}"
        raise ForumDefinitionError(source, _loc(err["loc"]), msg) from None
    problem = _check(defn)
    if problem is not None:
        raise ForumDefinitionError(source, *problem)
    return defn


def load_definition(path: Path | str) -> ForumDefinition:
    """Read and validate a forum definition file (YAML)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ForumDefinitionError(path, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ForumDefinitionError(path, "", f"cannot read file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ForumDefinitionError(path, where, f"invalid YAML: {problem}") from None
    return parse_definition(data, path)
