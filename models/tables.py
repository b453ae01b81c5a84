"""SQLModel tables. Enums are stored as strings; datetimes as aware UTC."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import field_validator, model_validator
from sqlalchemy import JSON, BigInteger, Column, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.db import utc_field


class Region(SQLModel, table=True):
    """A participating region (ISO 3166-2)."""

    code: str = Field(primary_key=True, max_length=8)
    name: str
    country: str = Field(max_length=2, index=True)


class WorkingGroup(SQLModel, table=True):
    """An ad hoc working group of the forum."""

    __tablename__ = "working_group"

    key: str = Field(primary_key=True, max_length=40)
    name: str
    chair: str = Field(foreign_key="member.handle")
    # Takes the chair's no-self steps (recommend) when the chair wrote the proposal.
    deputy_chair: str | None = Field(default=None, foreign_key="member.handle")
    active: bool = True


class Member(SQLModel, table=True):
    """A person taking part; ``roles`` is a comma-separated list of role names."""

    handle: str = Field(primary_key=True, max_length=40)
    name: str
    email: str
    language: str = Field(default="en", max_length=2)
    timezone: str = "UTC"
    region: str | None = Field(default=None, foreign_key="region.code")
    roles: str = "member"
    notify: str = Field(default="immediate", sa_type=String(16))
    active: bool = True

    @property
    def role_set(self) -> set[str]:
        """Roles as a set."""
        return {r for r in self.roles.split(",") if r}


class GroupMembership(SQLModel, table=True):
    """Who belongs to which working group."""

    __tablename__ = "group_membership"

    group_key: str = Field(foreign_key="working_group.key", primary_key=True)
    member: str = Field(foreign_key="member.handle", primary_key=True)


class PresidingTerm(SQLModel, table=True):
    """A region presides over the forum between two dates (inclusive)."""

    __tablename__ = "presiding_term"

    id: int | None = Field(default=None, primary_key=True)
    region: str = Field(foreign_key="region.code")
    start: dt.date
    end: dt.date
    # Takes the presiding region's no-self steps (approve) when its head wrote the proposal.
    deputy: str | None = Field(default=None, foreign_key="member.handle")


# Limits of a proposal's text, checked by the input models below (every interface builds one).
TITLE_MAX, SUMMARY_MAX, BODY_MAX = 300, 2000, 200_000
COMMENT_MAX = 20_000  # characters of an action's comment


NUL = "\x00"


class ProposalBase(SQLModel):
    """Fields an author gives."""

    title: str = Field(min_length=1, max_length=TITLE_MAX)
    summary: str = Field(default="", max_length=SUMMARY_MAX)
    body: str = ""


# What the text checks say (interfaces that show the problems in other words match them).
EMPTY = "must not be empty"
HAS_NUL = "must not contain a NUL character"


def _text(value: Any) -> Any:
    """Decode bytes as UTF-8 and refuse NUL bytes: the checks every text field of a proposal gets."""
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"is not valid UTF-8 text (byte {exc.start})") from None
    if isinstance(value, str):
        if NUL in value:
            raise ValueError(HAS_NUL)
        try:  # lone surrogates (e.g. undecodable bytes in command-line arguments) cannot be stored
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"is not valid UTF-8 text (character {exc.start})") from None
    return value


def _title(value: Any) -> Any:
    """A title on one line, spaces collapsed; never empty."""
    value = _text(value)
    if isinstance(value, str):
        value = " ".join(value.split())
        if not value:
            raise ValueError(EMPTY)
    return value


class ProposalCreate(ProposalBase):
    """Validated input for a new proposal (the body may be given as UTF-8 bytes)."""

    body: str = Field(default="", max_length=BODY_MAX)
    group: str
    author: str

    @field_validator("title", mode="before")
    @classmethod
    def _check_title(cls, value: Any) -> Any:
        return _title(value)

    @field_validator("summary", "body", mode="before")
    @classmethod
    def _check_text(cls, value: Any) -> Any:
        return _text(value)

    @field_validator("group", "author")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        # PostgreSQL text cannot hold NUL and SQLite would store it: refused on every backend alike (texts: _text).
        if NUL in value:
            raise ValueError(HAS_NUL)
        return value


class ProposalTextEdit(SQLModel):
    """Validated input for a new text version: the fields to change (None keeps the current one)."""

    title: str | None = Field(default=None, min_length=1, max_length=TITLE_MAX)
    summary: str | None = Field(default=None, max_length=SUMMARY_MAX)
    body: str | None = Field(default=None, max_length=BODY_MAX)

    @field_validator("title", mode="before")
    @classmethod
    def _check_title(cls, value: Any) -> Any:
        return _title(value)

    @field_validator("summary", "body", mode="before")
    @classmethod
    def _check_text(cls, value: Any) -> Any:
        return _text(value)

    @model_validator(mode="after")
    def _something(self) -> ProposalTextEdit:
        if self.title is None and self.summary is None and self.body is None:
            raise ValueError("nothing to edit: give a title, a summary or a body")
        return self


class Proposal(ProposalBase, table=True):
    """A proposal for a specific cooperation measure."""

    id: int | None = Field(default=None, primary_key=True)
    group: str = Field(foreign_key="working_group.key", index=True)
    author: str = Field(foreign_key="member.handle")
    state: str = Field(sa_type=String(40), index=True)
    version: int = 1
    text_version: int = 1
    round: int = 0
    state_entered_at: dt.datetime = utc_field()
    deadline: dt.datetime | None = utc_field(default=None, index=True)
    presiding_region: str | None = Field(default=None, max_length=8)
    last_progress_at: dt.datetime | None = utc_field(default=None)
    percent: int = 0
    created_at: dt.datetime = utc_field()
    updated_at: dt.datetime = utc_field()


# The largest id a proposal row can have (PostgreSQL INTEGER is 32 bits): larger ids are simply not found.
MAX_PROPOSAL_ID = 2**63 - 1 if isinstance(Proposal.__table__.c.id.type, BigInteger) else 2**31 - 1  # type: ignore[attr-defined]


class Event(SQLModel, table=True):
    """Append-only record of what happened to a proposal."""

    __table_args__ = (
        UniqueConstraint("proposal_id", "seq", name="uq_event_proposal_seq"),
        Index("ix_event_proposal_action", "proposal_id", "action"),
    )

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id")
    seq: int
    action: str = Field(sa_type=String(40))
    from_state: str = Field(sa_type=String(40))
    to_state: str = Field(sa_type=String(40))
    actor: str = Field(max_length=40)
    at: dt.datetime = utc_field(index=True)
    comment: str = ""
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ProposalText(SQLModel, table=True):
    """One version of a proposal's text: version 1 is written with the proposal, every edit adds one."""

    __tablename__ = "proposal_text"
    # The unique key's index serves lookups by proposal too (no index of proposal_id alone: migration 0008).
    __table_args__ = (UniqueConstraint("proposal_id", "version", name="uq_proposal_text_version"),)

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id")
    version: int
    title: str = Field(max_length=TITLE_MAX)
    summary: str = Field(default="", max_length=SUMMARY_MAX)
    body: str = ""
    author: str = Field(foreign_key="member.handle")
    at: dt.datetime = utc_field()


class EndorsementDecision(SQLModel, table=True):
    """A head of region's decision in one endorsement round of a proposal, on the text version under review."""

    __tablename__ = "endorsement_decision"
    # The unique key's index serves lookups by proposal too (no index of proposal_id alone: migration 0008).
    __table_args__ = (UniqueConstraint("proposal_id", "round", "member", name="uq_decision_member"),)

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id")
    round: int
    member: str = Field(foreign_key="member.handle")
    region: str = Field(foreign_key="region.code")
    country: str = Field(max_length=2)
    decision: str = Field(sa_type=String(16))
    text_version: int = 1
    at: dt.datetime = utc_field()


class ProgressReport(SQLModel, table=True):
    """An implementation progress report."""

    __tablename__ = "progress_report"

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    percent: int = Field(ge=0, le=100)
    note: str = ""
    actor: str = Field(foreign_key="member.handle")
    at: dt.datetime = utc_field()


class ManualReminder(SQLModel, table=True):
    """A reminder a group chair or the presiding region sent by hand: at most one per proposal and UTC day.

    The unique key (proposal, day) is what holds the limit when two people press the button at once.
    """

    __tablename__ = "manual_reminder"
    __table_args__ = (UniqueConstraint("proposal_id", "day", name="uq_manual_reminder_day"),)

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id")
    day: dt.date
    member: str = Field(foreign_key="member.handle", max_length=40)
    at: dt.datetime = utc_field()
    event_id: int | None = Field(default=None, foreign_key="event.id")


class DefinitionGeneration(SQLModel, table=True):
    """One row: which loading of the forum definition is in force; a new token whenever the people change."""

    __tablename__ = "definition_generation"

    id: int = Field(default=1, primary_key=True)
    generation: int = 0
    # Random, so a roster cached for one database is never taken for another's at the same generation.
    token: str = Field(max_length=32)
