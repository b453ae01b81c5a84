"""The language switch: remembered in a cookie, then back to the page it was used on."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from notifications.render import LANGUAGES
from web.deps import State, local_path
from web.i18n import LANG_COOKIE, LANG_COOKIE_AGE
from web.routing import OneHopRoute
from web.security import cookies_secure, set_cookie

router = APIRouter(route_class=OneHopRoute)



@router.get("/language/{lang}", include_in_schema=False)
def switch_language(lang: str, request: Request, state: State, next: str = "/") -> RedirectResponse:
    """Remember ``lang`` for this browser and go back to ``next`` (only a preference: safe as a GET)."""
    response = RedirectResponse(local_path(next), status_code=303)
    if lang in LANGUAGES:
        set_cookie(response, LANG_COOKIE, lang, max_age=LANG_COOKIE_AGE, secure=cookies_secure(request, state.https))
    return response
