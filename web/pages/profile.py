"""The member's profile: who they are to the forum, and their personal API tokens (create: shown once; revoke)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response

from models.errors import InvalidInputError
from models.tokens import NAME_MAX, NewToken, create_token, revoke_token, tokens_of
from web.deps import DbSession, MemberPage, Now, Page
from web.i18n import LANGUAGE_NAMES
from web.routing import OneHopRoute

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)


def _render(
    page: Page, db: DbSession, *, status: int = 200, new: NewToken | None = None, name: str = "", error: str = "",
) -> Response:
    assert page.viewer is not None
    member = page.viewer.member
    return page.render(
        "profile.html", status=status, member=member, language=LANGUAGE_NAMES.get(member.language, member.language),
        tokens=tokens_of(db, member.handle), new=new, name=name, error=error, name_max=NAME_MAX,
    )


@router.get("/profile")
def profile(page: MemberPage, db: DbSession) -> Response:
    """Name, language, time zone and the member's API tokens (never the tokens themselves)."""
    return _render(page, db)


@router.post("/profile/tokens")
def new_token(page: MemberPage, db: DbSession, now: Now, name: Annotated[str, Form(max_length=1000)] = "") -> Response:
    """Make a token and show it on this answer only (it is not stored: reloading does not show it again)."""
    assert page.viewer is not None
    try:
        new = create_token(db, page.viewer.member.handle, name=name, now=now)
    except InvalidInputError:
        message = page.ui.gettext("Give the token a name (up to 100 characters), e.g. the script that uses it.")
        return _render(page, db, status=422, name=name, error=message)
    return _render(page, db, new=new)


@router.post("/profile/tokens/{token_id}/revoke")
def revoke(page: MemberPage, db: DbSession, now: Now, token_id: int) -> Response:
    """Revoke one of the member's own tokens (someone else's is not found)."""
    assert page.viewer is not None
    revoke_token(db, token_id, now=now, member=page.viewer.member.handle)
    return page.redirect("/profile")
