"""My actions: the landing page after sign-in, every proposal waiting on me, by deadline."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from models.inbox import my_actions
from web.deps import DbSession, MemberPage, Now
from web.routing import OneHopRoute

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)


@router.get("/")
def my_actions_page(page: MemberPage, db: DbSession, now: Now) -> Response:
    """The proposals where the signed-in member must act now, with the actions they may take."""
    assert page.viewer is not None
    items = my_actions(db, page.state.runtime.lifecycle, page.viewer.member.handle, now=now)
    return page.render("my_actions.html", items=items, group_names=page.group_names)
