"""Helpers of the API tests: a forum with proposals in several states, tokens, and calls with ETags."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from models import Lifecycle, session_scope
from models.tokens import create_token
from tests.factories import T0, make_proposal

API = "/api/v1"
PROBLEM = "application/problem+json"


def token_for(engine: Engine, handle: str, now: dt.datetime = T0, name: str = "tests") -> str:
    """A fresh personal API token for ``handle``."""
    with session_scope(engine) as s:
        return create_token(s, handle, name=name, now=now).raw


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def some_proposals(engine: Engine, lifecycle: Lifecycle) -> dict[str, int]:
    """Proposals by zhao.lei in the industry group, one per state on the happy path; ids by state."""
    return {
        state: make_proposal(engine, lifecycle, state=state, title=f"Agro park ({state})")
        for state in ("drafted", "in_review", "reviewed", "endorsed", "implementing")
    }


def etag(client: TestClient, pid: int, headers: dict[str, str]) -> str:
    """The proposal's current ETag, read through the API."""
    r = client.get(f"{API}/proposals/{pid}", headers=headers)
    assert r.status_code == 200, r.text
    return str(r.headers["etag"])


def act(client: TestClient, pid: int, action: str, headers: dict[str, str], **body: Any) -> Any:
    """Take ``action`` with the proposal's current ETag as If-Match; the response."""
    tag = etag(client, pid, headers)
    return client.post(f"{API}/proposals/{pid}/actions/{action}", headers=headers | {"If-Match": tag}, json=body or None)


def assert_problem(response: Any, status: int, *, detail: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status`` (and a detail containing ``detail``); its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"] == "about:blank" and body["title"]
    if detail is not None:
        assert detail in body.get("detail", ""), body
    return body
