"""Routes: every one is a one-trip route (web.routing), and every API route checks the caller (and CSRF)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from starlette.routing import Mount

from models import Lifecycle
from tests.factories import AUTHOR, make_proposal
from tests.web.api_support import API, assert_problem, bearer, etag, token_for
from web.deps import api_member
from web.routing import OneHopRoute


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every API route under ``routes``: in mounted apps and included routers too (with the prefix of the mount)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif isinstance(route, Mount) and isinstance(route.app, FastAPI):
            yield from _routes(route.app.routes, prefix + route.path)
        elif (inner := getattr(route, "original_router", None)) is not None:  # FastAPI's included router
            yield from _routes(inner.routes, prefix + getattr(getattr(route, "include_context", None), "prefix", ""))


def _calls(dependant: object) -> Iterator[object]:
    for sub in getattr(dependant, "dependencies", []):
        yield sub.call
        yield from _calls(sub)


def test_every_route_makes_one_trip(app: FastAPI) -> None:
    routes = list(_routes(app.routes))
    assert len(routes) > 30
    for path, route in routes:
        assert isinstance(route, OneHopRoute), path


def test_every_api_route_checks_the_caller_and_csrf(app: FastAPI) -> None:
    api = [(path, route) for path, route in _routes(app.routes) if path.startswith(API)]
    assert len(api) > 10
    for path, route in api:
        # A write done as one unit (web.units) finds its caller there, with the same checks (caller_of).
        unit = "write_unit" in route.endpoint.__code__.co_names
        assert unit or api_member in list(_calls(route.dependant)), f"{path} does not take ApiMember (which checks CSRF)"
    assert any("write_unit" in route.endpoint.__code__.co_names for _, route in api)


def test_the_busiest_route_is_the_first_one_tried(app: FastAPI) -> None:
    # Routes are tried in order, each a few microseconds: the mount of the API comes first among the app's routes,
    # and the action route first in the API.
    first, *_ = _routes(app.routes)
    assert first[0] == f"{API}/proposals/{{proposal_id}}/actions/{{action}}" and first[1].methods == {"POST"}


def test_a_refused_action_writes_nothing(client: TestClient, forum: Engine, lifecycle: Lifecycle) -> None:
    pid = make_proposal(forum, lifecycle)
    author = bearer(token_for(forum, AUTHOR))
    tag = etag(client, pid, author)
    assert_problem(client.post(f"{API}/proposals/{pid}/actions/recommend", headers=author | {"If-Match": tag}), 409)
    assert etag(client, pid, author) == tag
