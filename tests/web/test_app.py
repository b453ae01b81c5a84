"""The app factory, the API's OpenAPI document, the one mapping of domain errors to statuses, import hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from models.auth import RateLimitedError
from models.errors import ConflictError, ForumflowError, InvalidInputError, NotAllowedError, NotFoundError, NotPossibleError
from models.runtime import DatabaseError
from web.errors import extra_headers, problem, status_for


def test_openapi_document_of_the_api(client: TestClient) -> None:
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert "/me/actions" in doc["paths"]
    assert not any(path.startswith(("/sign-in", "/language")) for path in doc["paths"])  # pages are not API
    responses = doc["paths"]["/me/actions"]["get"]["responses"]
    assert "application/problem+json" in responses["401"]["content"]
    assert doc.get("servers", [{}])[0].get("url") == "/api/v1"
    assert client.get("/api/v1/docs").status_code == 404  # interactive docs would load scripts from elsewhere
    assert client.get("/openapi.json").status_code == 404


def test_unknown_api_path_is_a_problem(client: TestClient) -> None:
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 404


def test_unknown_page_is_a_page(client: TestClient) -> None:
    r = client.get("/nothing-here")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html") and "Page not found" in r.text


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInputError("x"), 422),
        (NotPossibleError("x"), 409),
        (NotAllowedError("x"), 403),
        (NotFoundError("x"), 404),
        (ConflictError("x"), 409),
        (RateLimitedError("x", 60), 429),
        (DatabaseError("x"), 503),
        (ForumflowError("x"), 400),
        (RuntimeError("x"), 500),
    ],
)
def test_domain_errors_map_to_statuses_in_one_place(error: Exception, status: int) -> None:
    assert status_for(error) == status


def test_problem_bodies() -> None:
    r = problem(429, "too many", headers=extra_headers(RateLimitedError("too many", 42)), allowed=["x"])
    assert r.status_code == 429 and r.media_type == "application/problem+json" and r.headers["retry-after"] == "42"
    assert r.body == b'{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"too many","allowed":["x"]}'


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(out.stdout.split())


def test_imports_stay_light() -> None:
    cli = _modules_after("import cli.main")
    assert "fastapi" not in cli and "uvicorn" not in cli and "web.app" not in cli and "prefect" not in cli
    web = _modules_after("import web.app")
    assert "prefect" not in web and "uvicorn" not in web


def test_nothing_is_built_at_import() -> None:
    import web.app

    assert not [name for name, value in vars(web.app).items() if type(value).__name__ in ("FastAPI", "Engine")]
