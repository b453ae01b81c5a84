"""Server-rendered pages. Each concern is a module with its own ``router``; ``router`` here joins them.

Every unsafe request to a page passes ``csrf_protect`` (a dependency of the joined router), so a new
module only needs its routes: take ``page: MemberPage`` (or ``AnyPage``), call models, ``page.render(...)``.
"""

from __future__ import annotations

from fastapi import APIRouter

from web.deps import CsrfProtected
from web.pages import actions, auth, forum, groups, language, profile, proposal, proposals
from web.routing import OneHopRoute

router = APIRouter(dependencies=[CsrfProtected], route_class=OneHopRoute)
router.include_router(auth.router)
router.include_router(actions.router)
router.include_router(language.router)
router.include_router(proposal.router)
router.include_router(proposals.router)
router.include_router(groups.router)
router.include_router(forum.router)
router.include_router(profile.router)
