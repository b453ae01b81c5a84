"""A member's inbox: the proposals where they must act now, as the lifecycle answers it, by deadline."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session

from models.lifecycle import AllowedAction, Lifecycle, past_deadline, proposals_in, utc
from models.review import PROGRESS_DUE, REMIND, plan
from models.tables import Proposal

# When a state has no reminders, "closing soon" starts this long before the deadline.
DEFAULT_SOON = dt.timedelta(days=2)


@dataclass(frozen=True)
class ActionItem:
    """A proposal waiting on the member, the actions they may take on it, and how urgent it is.

    ``deadline`` is the state's (the proposal's own deadline, as every list shows it) or, for a measure being
    implemented, when its next progress report is due (``report``). ``overdue``: that moment has passed, in the
    same sense as the lists' ``overdue`` filter (strictly after it).
    """

    proposal: Proposal
    actions: list[AllowedAction]
    deadline: dt.datetime | None
    overdue: bool
    closing_soon: bool
    report: bool = False


def _urgency(lifecycle: Lifecycle, proposal: Proposal, now: dt.datetime) -> tuple[dt.datetime | None, bool, bool]:
    """The deadline the member works to (the state's, or the next progress report's), overdue, closing soon.

    Closing soon starts at the last reminder before the deadline (the definition's own sense of "soon").
    """
    todo = plan(lifecycle.workflow, proposal)
    if todo is None:
        return None, False, False
    nudges = [s.at for s in todo.steps if s.kind in (REMIND, PROGRESS_DUE) and s.at <= todo.deadline]
    soon_from = max(nudges) if nudges else todo.deadline - DEFAULT_SOON
    overdue = past_deadline(todo.deadline, now)
    return todo.deadline, overdue, not overdue and now >= soon_from


def my_actions(session: Session, lifecycle: Lifecycle, handle: str, *, now: dt.datetime) -> list[ActionItem]:
    """Every open proposal where ``handle`` must act now, with their allowed actions; by deadline, then id."""
    now = utc(now)
    items = []
    for p, mine in lifecycle.waiting_on(session, proposals_in(session, lifecycle.open_states), handle, now):
        deadline, overdue, soon = _urgency(lifecycle, p, now)
        items.append(ActionItem(p, mine, deadline, overdue, soon, report=p.state == lifecycle.workflow.progress.state))
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    items.sort(key=lambda i: (i.deadline or far, i.proposal.id or 0))
    return items
