"""A working group's page: for its chair, readable by every member: proposals by state, overdue ones, measures."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from babel.numbers import format_percent
from fastapi import APIRouter, Path
from fastapi.responses import Response

from models.queries import group_overview, member_names
from web.deps import DbSession, MemberPage, Now
from web.routing import OneHopRoute

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)


@router.get("/groups/{key}")
def group_page(page: MemberPage, db: DbSession, now: Now, key: Annotated[str, Path(max_length=100)]) -> Response:
    """The group ``key``: who is in it, its proposals by state, the overdue ones, its measures' progress."""
    assert page.viewer is not None
    runtime = page.state.runtime
    overview = group_overview(db, runtime.lifecycle, key, now=now)
    handle = page.viewer.member.handle
    role = (
        "chair" if handle == overview.group.chair
        else "deputy_chair" if handle == overview.group.deputy_chair
        else "member" if any(m.handle == handle for m in overview.members)
        else ""
    )
    return page.render(
        "group.html", overview=overview, group_name=page.group_names.get(key, overview.group.name), names=member_names(db),
        role=role,
        filter_link="/proposals?" + urlencode({"group": overview.group.key}),
        percent=lambda n: format_percent(n / 100, locale=page.ui.lang),
    )
