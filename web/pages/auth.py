"""Signing in without a password: ask for a link by mail, open it (GET only shows), continue (POST signs in), sign out."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from models.auth import RateLimitedError, consume_sign_in, end_session, member_for_token, start_session
from models.errors import InvalidInputError
from notifications.signin import SIGN_IN_PATH, mail_sign_in_link
from web.deps import AnyPage, DbSession, Now, Page, local_path
from web.routing import OneHopRoute
from web.security import CSRF_COOKIE, SESSION_COOKIE, delete_cookie, set_cookie

SIGN_OUT_PATH = "/sign-out"

router = APIRouter(include_in_schema=False, route_class=OneHopRoute)


def client_address(request: Request) -> str:
    """The client's address as the server sees it (behind a proxy: as the proxy headers tell uvicorn)."""
    return request.client.host if request.client else "unknown"


@router.get("/sign-in")
def sign_in_form(page: AnyPage, next: str = "/") -> Response:
    """Ask for the mail address to send a sign-in link to."""
    if page.viewer is not None:
        return page.redirect(local_path(next))
    return page.render("sign_in.html", next=local_path(next), address="", error="")


@router.post("/sign-in")
def request_link(
    page: AnyPage, db: DbSession, now: Now, address: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Mail a sign-in link; the answer is the same whether or not the address belongs to a member."""
    state, target = page.state, local_path(next)
    try:
        mail_sign_in_link(
            db, state.runtime.definition, state.settings, address, client=client_address(page.request), now=now,
            next_path=target,
        )
    except InvalidInputError:
        message = page.ui.gettext("Enter a mail address, for example name@example.org.")
        return page.render("sign_in.html", status=422, next=target, address=address, error=message)
    except RateLimitedError as exc:
        minutes = max(1, round(exc.retry_after / 60))
        return page.render("rate_limited.html", status=429, headers={"Retry-After": str(exc.retry_after)}, minutes=minutes)
    return page.redirect("/sign-in/sent")


@router.get("/sign-in/sent")
def link_sent(page: AnyPage) -> Response:
    """Check your mail."""
    return page.render("check_mail.html", minutes=round(page.state.settings.sign_in_link_minutes))


def _link_invalid(page: Page) -> Response:
    return page.render("link_invalid.html", status=410)


@router.get(SIGN_IN_PATH)
def confirm_sign_in(page: AnyPage, db: DbSession, now: Now, token: str = "", next: str = "/") -> Response:
    """Show "Continue as NAME": opening the link (as mail scanners do) signs nobody in."""
    member = member_for_token(db, token, now=now) if token else None
    if member is None:
        return _link_invalid(page)
    return page.render("continue.html", name=member.name, token=token, next=local_path(next))


@router.post(SIGN_IN_PATH)
def sign_in(
    page: AnyPage, db: DbSession, now: Now, token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Use the link's token up and start a new session (a new id; any session of this browser ends)."""
    member = consume_sign_in(db, token, now=now) if token else None
    if member is None:
        return _link_invalid(page)
    settings = page.state.settings
    new = start_session(
        db, member, now=now, valid=dt.timedelta(hours=settings.web_session_hours),
        replacing=page.request.cookies.get(SESSION_COOKIE),
    )
    response = page.redirect(local_path(next))
    set_cookie(response, SESSION_COOKIE, new.raw_id, max_age=int((new.expires_at - now).total_seconds()), secure=page.secure)
    delete_cookie(response, CSRF_COOKIE, secure=page.secure)
    return response


@router.post(SIGN_OUT_PATH)
def sign_out(page: AnyPage, db: DbSession, now: Now) -> Response:
    """End this browser's session."""
    raw = page.request.cookies.get(SESSION_COOKIE)
    if raw:
        end_session(db, raw, now=now)
    response = page.redirect("/sign-in")
    delete_cookie(response, SESSION_COOKIE, secure=page.secure)
    return response
