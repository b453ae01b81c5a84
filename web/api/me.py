"""The signed-in member's own view: ``/me/actions``."""

from __future__ import annotations

from fastapi import APIRouter

from models.inbox import my_actions
from web.api.schemas import ActionItemOut, MyActionsOut
from web.deps import ApiMember, DbSession, Now, State
from web.errors import problem_responses
from web.routing import OneHopRoute

router = APIRouter(prefix="/me", tags=["me"], route_class=OneHopRoute)


@router.get("/actions", response_model=MyActionsOut, responses=problem_responses(401))
def get_my_actions(who: ApiMember, db: DbSession, now: Now, state: State) -> MyActionsOut:
    """Every proposal where I must act now (the lifecycle's answer), its deadline and marks, by deadline."""
    items = my_actions(db, state.runtime.lifecycle, who.member.handle, now=now)
    return MyActionsOut(member=who.member.handle, items=[ActionItemOut.of(i, state.settings.base_url) for i in items])
