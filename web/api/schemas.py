"""What the API returns: public models, built from the models' read side."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from models.inbox import ActionItem


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
    overdue: bool
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
            overdue=item.overdue, closing_soon=item.closing_soon, url=f"{base_url}/proposals/{p.id}",
            actions=[ActionOut(action=a.action, label=a.label, comment_required=a.comment_required) for a in item.actions],
        )


class MyActionsOut(BaseModel):
    """Every proposal where the member must act now, by deadline."""

    member: str
    items: list[ActionItemOut]
