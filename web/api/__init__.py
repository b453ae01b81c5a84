"""The JSON API, a FastAPI application of its own mounted at ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``).

Its own app keeps its errors problem+json (``web.errors.install_api_handlers``) and its OpenAPI free of
the pages. Each concern is a module with a ``router``; every unsafe request passes ``csrf_protect``
(session cookies need the ``X-CSRF-Token`` header; Bearer tokens are exempt; a request with neither is
answered 401 by the route).
"""

from __future__ import annotations

from fastapi import FastAPI

from web.api import forum, me, proposals
from web.deps import ApiCsrfProtected
from web.errors import install_api_handlers, problem_responses
from web.state import WebState

PREFIX = "/api/v1"


def create_api(state: WebState) -> FastAPI:
    """The API app for ``state`` (mounted by ``web.app.create_app``)."""
    api = FastAPI(
        title=f"{state.runtime.definition.forum.name} API",
        version="1",
        description="Proposals of the forum's working groups. Errors are application/problem+json (RFC 9457).",
        openapi_url="/openapi.json",
        docs_url=None,  # the interactive docs load scripts from another host
        redoc_url=None,
        dependencies=[ApiCsrfProtected],
        responses=problem_responses(500),
    )
    api.state.web = state
    install_api_handlers(api)
    api.include_router(me.router)
    api.include_router(proposals.router)
    api.include_router(forum.router)
    return api
