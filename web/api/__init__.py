"""The JSON API, a FastAPI application of its own mounted at ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``).

Its own app keeps its errors problem+json (``web.errors.install_api_handlers``) and its OpenAPI free of
the pages. Each concern is a module with a ``router``; every route takes the caller (``web.deps.ApiMember``), which
passes every unsafe request through ``csrf_protect`` (session cookies need the ``X-CSRF-Token`` header; Bearer
tokens are exempt; a request with neither is answered 401). tests/web/test_app.py checks that no route goes without.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder

from web.api import forum, me, proposals
from web.deps import API_SECURITY
from web.errors import ApiGate, install_api_handlers, problem_responses
from web.security import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE
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
        responses=problem_responses(500),
    )
    api.state.web = state
    install_api_handlers(api)
    api.add_middleware(ApiGate, session_cookie=SESSION_COOKIE, csrf_header=CSRF_HEADER, safe_methods=SAFE_METHODS)
    api.include_router(proposals.router)  # first: it holds the busiest route (routes are tried in order)
    api.include_router(me.router)
    api.include_router(forum.router)
    _document_choices(api, state)
    return api


def _document_security(document: dict[str, Any]) -> None:
    """Every operation needs a member, by a Bearer token or the session cookie (``web.deps.API_SECURITY``)."""
    schemes = {scheme.scheme_name: scheme for scheme in API_SECURITY}
    components = document.setdefault("components", {})
    components["securitySchemes"] = {
        name: jsonable_encoder(scheme.model, by_alias=True, exclude_none=True) for name, scheme in sorted(schemes.items())
    }
    for path in document.get("paths", {}).values():
        for operation in path.values():
            operation["security"] = [{name: []} for name in schemes]


def _document_choices(api: FastAPI, state: WebState) -> None:
    """List the forum's states, working groups and actions as ``enum``s of the parameters that take them.

    They come from the forum definition, so the routes take plain strings (and refuse others with 422);
    the document still tells clients the values that exist.
    """
    workflow = state.runtime.definition.workflow
    choices = {
        "state": [s.name for s in workflow.states],
        "group": [g.key for g in state.runtime.definition.working_groups],
        "action": [a.name for a in workflow.actions],  # the system's own (consensus, silence) are refused: 403
    }
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = build()
            for path in document.get("paths", {}).values():
                for operation in path.values():
                    for parameter in operation.get("parameters", []):
                        values = choices.get(parameter.get("name", ""))
                        if values and parameter.get("in") in ("query", "path"):
                            schema = {"type": "string", "enum": values}
                            parameter["schema"] = schema | {"title": parameter.get("schema", {}).get("title", "")}
            _document_security(document)
            body = document.get("components", {}).get("schemas", {}).get("ProposalIn", {}).get("properties", {})
            if "group" in body:
                body["group"] = {"type": "string", "enum": choices["group"], "title": "Group"}
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
