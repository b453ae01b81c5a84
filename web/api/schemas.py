"""What the API returns: public models, built from the models' read side."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema

from models.inbox import ActionItem
from models.tables import BODY_MAX, COMMENT_MAX, SUMMARY_MAX, TITLE_MAX, Event, Proposal, ProposalText

# What the models refuse in any text (documented here so clients know): NUL characters; a title also needs
# something besides spaces and control characters.
NO_NUL = r"^[^\x00]*$"
SOME_TEXT = r"^[^\x00]*[^\s\x00-\x1f\x7f-\x9f][^\x00]*$"
Title = Annotated[str, StringConstraints(min_length=1, max_length=TITLE_MAX, pattern=SOME_TEXT)]
Summary = Annotated[str, StringConstraints(max_length=SUMMARY_MAX, pattern=NO_NUL)]
Body = Annotated[str, StringConstraints(max_length=BODY_MAX, pattern=NO_NUL)]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # a field left out keeps the current text: there is no default to document


class ActionOut(BaseModel):
    """An action the member may take now."""

    action: str
    label: str
    comment_required: bool


class ActionItemOut(BaseModel):
    """A proposal waiting on the member."""

    proposal_id: int
    title: str
    group: str
    state: str
    version: int = Field(description="The proposal's version (for If-Match on writes).")
    deadline: dt.datetime | None = Field(description="When the member's step is due (UTC), if it has a deadline.")
    deadline_of: Literal["state", "progress_report"] = Field(
        description="What the deadline is: the state's, or the next progress report of a measure being implemented.",
    )
    overdue: bool = Field(description="The deadline has passed (as the list's overdue filter says of the state's).")
    closing_soon: bool
    actions: list[ActionOut]
    url: str = Field(description="The proposal's page in the web app.")

    @classmethod
    def of(cls, item: ActionItem, base_url: str) -> ActionItemOut:
        """From the inbox's item."""
        p = item.proposal
        assert p.id is not None
        return cls(
            proposal_id=p.id, title=p.title, group=p.group, state=p.state, version=p.version, deadline=item.deadline,
            deadline_of="progress_report" if item.report else "state",
            overdue=item.overdue, closing_soon=item.closing_soon, url=f"{base_url}/proposals/{p.id}",
            actions=[ActionOut(action=a.action, label=a.label, comment_required=a.comment_required) for a in item.actions],
        )


class MyActionsOut(BaseModel):
    """Every proposal where the member must act now, by deadline."""

    member: str
    items: list[ActionItemOut]


# ---------------------------------------------------------------------- proposals
class AllowedOut(BaseModel):
    """An action possible on a proposal now, and who may take it."""

    action: str
    label: str
    actors: list[str]
    comment_required: bool


class ProposalOut(BaseModel):
    """A proposal as listed (no body, no history)."""

    id: int
    title: str
    summary: str
    group: str
    author: str
    state: str
    version: int = Field(description="Moves with every change; the ETag is \"{id}-{version}\".")
    etag: str = Field(description="The proposal's ETag, to send as If-Match on writes.")
    text_version: int
    round: int = Field(description="The endorsement round (0 before the first).")
    percent: int = Field(description="Implementation progress in percent.")
    deadline: dt.datetime | None = Field(description="When the current state's time runs out (UTC), if it has a deadline.")
    overdue: bool = Field(description="Whether the deadline has passed (final states have none).")
    state_entered_at: dt.datetime
    presiding_region: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    url: str = Field(description="The proposal's page in the web app.")

    @classmethod
    def fields_of(cls, p: Proposal, *, now: dt.datetime, base_url: str, final_states: Collection[str]) -> dict[str, Any]:
        """The listed fields of a proposal row."""
        assert p.id is not None
        return {
            "id": p.id, "title": p.title, "summary": p.summary, "group": p.group, "author": p.author, "state": p.state,
            "version": p.version, "etag": etag_of(p), "text_version": p.text_version, "round": p.round, "percent": p.percent,
            "deadline": p.deadline, "overdue": p.deadline is not None and now >= p.deadline and p.state not in final_states,
            "state_entered_at": p.state_entered_at, "presiding_region": p.presiding_region, "created_at": p.created_at,
            "updated_at": p.updated_at, "url": f"{base_url}/proposals/{p.id}",
        }

    @classmethod
    def of(cls, p: Proposal, *, now: dt.datetime, base_url: str, final_states: Collection[str]) -> ProposalOut:
        """From a proposal row."""
        return cls(**cls.fields_of(p, now=now, base_url=base_url, final_states=final_states))


def etag_of(p: Proposal) -> str:
    """The strong ETag of a proposal's current version: ``"{id}-{version}"``."""
    return f'"{p.id}-{p.version}"'


class TextInfoOut(BaseModel):
    """Which text version is current, who wrote it and when."""

    version: int
    author: str
    at: dt.datetime


class ProposalDetailOut(ProposalOut):
    """A proposal with its current text in full and what may happen next."""

    body: str
    text: TextInfoOut
    allowed: list[AllowedOut] = Field(description="Every action possible now and who may take it (system actions excluded).")
    my_actions: list[str] = Field(description="The actions the caller may take now.")


class ProposalListOut(BaseModel):
    """One page of proposals matching the filters, by id."""

    items: list[ProposalOut]
    total: int = Field(description="How many proposals match in all.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="The offset of the next page, if there is one.")


class EventOut(BaseModel):
    """One event of a proposal's log: who did what and when (reminders and escalations name whom they went to)."""

    seq: int
    at: dt.datetime
    action: str
    from_state: str | None
    to_state: str
    actor: str
    comment: str
    payload: dict[str, Any]

    @classmethod
    def of(cls, e: Event) -> EventOut:
        """From an event row."""
        return cls(
            seq=e.seq, at=e.at, action=e.action, from_state=e.from_state or None, to_state=e.to_state, actor=e.actor,
            comment=e.comment, payload=dict(e.payload or {}),
        )


class TextOut(BaseModel):
    """One text version of a proposal, in full."""

    version: int
    title: str
    summary: str
    body: str
    author: str
    at: dt.datetime

    @classmethod
    def of(cls, t: ProposalText) -> TextOut:
        """From a text version row."""
        return cls(version=t.version, title=t.title, summary=t.summary, body=t.body, author=t.author, at=t.at)


class DiffOp(BaseModel):
    """One step from the old text to the new: ``equal`` (text), ``delete`` (old), ``insert`` (new) or ``replace``."""

    op: Literal["equal", "delete", "insert", "replace"]
    text: str | None = None
    old: str | None = None
    new: str | None = None


class FieldChangeOut(BaseModel):
    """Whether a field changed, and its word-by-word changes."""

    changed: bool
    ops: list[DiffOp]


class DiffOut(BaseModel):
    """The changes between two text versions of a proposal."""

    model_config = ConfigDict(populate_by_name=True)

    proposal_id: int
    from_version: int = Field(alias="from")
    to_version: int = Field(alias="to")
    current: int = Field(description="The proposal's current text version.")
    changed: list[str] = Field(description="The fields that changed (title, summary, body).")
    unified: str = Field(description="A unified diff of the three fields.")
    fields: dict[str, FieldChangeOut]


class EventsOut(BaseModel):
    """Events written by a write (an endorsement that completes consensus writes two)."""

    events: list[EventOut]
    proposal: ProposalDetailOut


# ---------------------------------------------------------------------- input
class ProposalIn(BaseModel):
    """A new proposal: the caller is its author, and must be a member of the working group."""

    model_config = ConfigDict(extra="forbid")

    group: str = Field(max_length=40, description="The working group's key.")
    title: Title
    summary: Summary = ""
    body: Body = ""


class TextEditIn(BaseModel):
    """A new text version of a draft: the fields given replace the current ones (leave a field out to keep it)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    title: Title | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_no_default)
    summary: Summary | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_no_default)
    body: Body | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_no_default)

    @field_validator("title", "summary", "body", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:  # only an explicit null gets here: a field left out keeps its default
            raise ValueError("leave the field out to keep it; null is not a text")
        return value


class ActionIn(BaseModel):
    """What an action takes besides its name: a comment (required by some) and a percent (progress reports)."""

    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=COMMENT_MAX, pattern=NO_NUL)
    percent: int | None = Field(default=None, ge=0, le=100)


# ---------------------------------------------------------------------- the forum
class RegionOut(BaseModel):
    """A participating region and its head."""

    code: str
    name: str
    country: str
    head: str | None


class TermOut(BaseModel):
    """A presiding term."""

    region: str
    start: dt.date
    end: dt.date
    deputy: str | None
    current: bool


class GapOut(BaseModel):
    """Days no presiding term covers (nobody can approve then)."""

    model_config = ConfigDict(populate_by_name=True)

    from_day: dt.date | None = Field(alias="from")
    to_day: dt.date | None = Field(alias="to")
    message: str


class GroupOut(BaseModel):
    """A working group, its chair and members."""

    key: str
    name: str
    chair: str
    deputy_chair: str | None
    members: list[str]


class StateOut(BaseModel):
    """A state of the workflow."""

    name: str
    label: str
    sla_days: int | None
    final: bool


class WorkflowActionOut(BaseModel):
    """An action of the workflow: from which states, to which, by whom."""

    name: str
    label: str
    source: list[str]
    dest: str
    roles: list[str]
    comment_required: bool


class WorkflowOut(BaseModel):
    """The workflow in force."""

    initial: str
    states: list[StateOut]
    actions: list[WorkflowActionOut]


class ForumOut(BaseModel):
    """The forum: member states, regions and heads, presiding terms, working groups, the workflow, proposal counts."""

    forum: str
    member_states: list[str]
    regions: list[RegionOut]
    presiding_terms: list[TermOut]
    presiding_region_now: str | None
    presiding_gaps: list[GapOut]
    working_groups: list[GroupOut]
    members: int = Field(description="How many members are active.")
    proposals: dict[str, int] = Field(description="How many proposals are in each state.")
    workflow: WorkflowOut
