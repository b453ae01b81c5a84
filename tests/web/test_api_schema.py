"""The API against its own OpenAPI document: schemathesis generates requests (valid and invalid) and checks every answer.

Every built-in check runs on every response (no server error, status codes, content types, headers and bodies
as documented, invalid input refused, authentication enforced), on SQLite and PostgreSQL, authenticated with
a Bearer token on a forum with proposals in several states. Writes are sent with the proposal's current ETag
(a random If-Match is only ever 412), so they really go through the lifecycle.
"""

from __future__ import annotations

import time
from typing import Any

import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from sqlalchemy.engine import Engine

from models import Lifecycle
from tests.web.api_support import API, bearer, some_proposals, token_for

# Per operation and generation mode: small, so the whole run stays well under a minute.
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 8}
ACTIONS = "POST /proposals/{proposal_id}/actions/{action}"
# The rules of an action that no schema can say (they depend on the action and the proposal's state), each a 422.
ACTION_RULES = ("needs a comment", "needs the progress", "takes no progress percent", "Progress cannot go back")
# Valid data to a write is still refused when its If-Match is missing (428) or stale (412): the schema documents
# the header, but cannot say which value is current. Actions also answer 422 for the rules above (checked below).
CONFIG = """
[[operations]]
include-name = "PATCH /proposals/{proposal_id}"
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 403, 404, 409, 412, 428]

[[operations]]
include-name = "POST /proposals/{proposal_id}/actions/{action}"
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 403, 404, 409, 412, 422, 428]
"""


def _actions_answer(response: Any) -> str | None:
    """For valid requests to the actions route: what the lifecycle may answer (else what is wrong)."""
    if response.status_code in (200, 403, 404, 409, 412):
        return None
    if response.status_code == 422 and any(rule in response.json().get("detail", "") for rule in ACTION_RULES):
        return None
    return f"unexpected {response.status_code}: {response.text[:300]}"


def _explore(
    operation: Any, mode: GenerationMode, examples: int, headers: dict[str, str], reader: TestClient,
    statuses: dict[str, set[int]],
) -> None:
    """Send ``examples`` generated requests to one operation and run every check on each answer."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples, deadline=None, database=None, derandomize=True,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        sent = dict(headers)
        pid = (case.path_parameters or {}).get("proposal_id")
        if mode is GenerationMode.POSITIVE and case.method in ("PATCH", "POST") and isinstance(pid, int):
            current = reader.get(f"{API}/proposals/{pid}", headers=headers)
            if current.status_code == 200:
                sent["If-Match"] = current.headers["etag"]
        response = case.call_and_validate(headers=sent)
        if operation.label == ACTIONS and mode is GenerationMode.POSITIVE:
            wrong = _actions_answer(response)
            assert wrong is None, wrong
        statuses.setdefault(operation.label, set()).add(response.status_code)

    run()


def test_every_check_passes(app: FastAPI, forum: Engine, lifecycle: Lifecycle) -> None:
    ids = sorted(some_proposals(forum, lifecycle).values())
    headers = bearer(token_for(forum, "zhao.lei"))
    schema = schemathesis.openapi.from_asgi(f"{API}/openapi.json", app, config=schemathesis.Config.from_str(CONFIG))
    reader = TestClient(app, base_url="http://testserver")

    @schema.hook("map_path_parameters")
    def existing_proposals(context: Any, path_parameters: dict[str, Any] | None) -> dict[str, Any] | None:
        # Mostly proposals that exist (a random id is almost always 404); some ids stay as generated.
        pid = (path_parameters or {}).get("proposal_id")
        if path_parameters is not None and isinstance(pid, int) and pid % 7:
            path_parameters["proposal_id"] = ids[pid % len(ids)]
        return path_parameters

    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, examples in EXAMPLES.items():
            try:
                _explore(operation, mode, examples, headers, reader, statuses)
            except (Exception, BaseExceptionGroup) as exc:  # one report per operation and mode, all listed at the end
                failures.append(f"{operation.label} ({mode.value}): {exc}"[:3000])
    assert not failures, "\n\n".join(failures)
    # The run reached the lifecycle: writes succeeded, refusals and stale versions came back as documented.
    assert 201 in statuses["POST /proposals"]
    assert 200 in statuses["PATCH /proposals/{proposal_id}"]
    assert {403, 409} <= statuses[ACTIONS] and 404 in statuses["GET /proposals/{proposal_id}"]
    assert time.monotonic() - started < 60
