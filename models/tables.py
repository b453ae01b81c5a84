"""SQLModel tables. Enums are stored as strings; datetimes as aware UTC."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import field_validator
from sqlalchemy import JSON, BigInteger, Column, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.db import UTCDateTime


def _utc(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)  # type: ignore[call-overload]


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


NUL = "\x00"


class ProposalBase(SQLModel):
    """Fields an author gives."""

    title: str = Field(min_length=1, max_length=300)
    summary: str = Field(default="", max_length=2000)
    body: str = ""


class ProposalCreate(ProposalBase):
    """Validated input for a new proposal."""

    group: str
    author: str

    @field_validator("title", "summary", "body", "group", "author")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        # PostgreSQL text cannot hold NUL and SQLite would store it: refused on every backend alike.
        if NUL in value:
            raise ValueError("must not contain a NUL character")
        return value


class Proposal(ProposalBase, table=True):
    """A proposal for a specific cooperation measure."""

    id: int | None = Field(default=None, primary_key=True)
    group: str = Field(foreign_key="working_group.key", index=True)
    author: str = Field(foreign_key="member.handle")
    state: str = Field(sa_type=String(40), index=True)
    version: int = 1
    text_version: int = 1
    round: int = 0
    state_entered_at: dt.datetime = _utc()
    deadline: dt.datetime | None = _utc(default=None, index=True)
    presiding_region: str | None = Field(default=None, max_length=8)
    last_progress_at: dt.datetime | None = _utc(default=None)
    percent: int = 0
    created_at: dt.datetime = _utc()
    updated_at: dt.datetime = _utc()


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
    at: dt.datetime = _utc(index=True)
    comment: str = ""
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class EndorsementDecision(SQLModel, table=True):
    """A head of region's decision in one endorsement round of a proposal."""

    __tablename__ = "endorsement_decision"
    __table_args__ = (UniqueConstraint("proposal_id", "round", "member", name="uq_decision_member"),)

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    round: int
    member: str = Field(foreign_key="member.handle")
    region: str = Field(foreign_key="region.code")
    country: str = Field(max_length=2)
    decision: str = Field(sa_type=String(16))
    at: dt.datetime = _utc()


class ProgressReport(SQLModel, table=True):
    """An implementation progress report."""

    __tablename__ = "progress_report"

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    percent: int = Field(ge=0, le=100)
    note: str = ""
    actor: str = Field(foreign_key="member.handle")
    at: dt.datetime = _utc()
