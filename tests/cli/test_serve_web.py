"""``forumflow serve`` runs the web app beside the flows (the flows themselves are tested in tests/flows/test_serve.py)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from notifications.sink import free_port
from tests.cli.conftest import Invoke


def _status(url: str) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.fixture
def flows_seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the Prefect part of ``serve``: it records what it saw of the web app, then stops as on Ctrl-C."""
    seen: dict[str, Any] = {}
    monkeypatch.setenv("FORUMFLOW_BASE_URL", "")  # serve exports it for the flow runs: restored after the test
    monkeypatch.delenv("FORUMFLOW_BASE_URL")

    def fake_serve_flows(settings: Any, *, port: int, announce: Any, on_ready: Any) -> None:
        import os

        on_ready()  # the Prefect server answers and nothing refuses
        seen["base_url"] = os.environ.get("FORUMFLOW_BASE_URL")
        seen["web"] = {path: _status(f"{seen['url']}{path}") for path in ("/sign-in", "/static/forumflow.css")}
        raise KeyboardInterrupt

    monkeypatch.setattr("flows.serve.serve_flows", fake_serve_flows)
    return seen


def test_serve_runs_the_web_app_beside_the_flows_and_stops_it(cli: Invoke, flows_seen: dict[str, Any]) -> None:
    port = free_port()
    flows_seen["url"] = f"http://127.0.0.1:{port}"
    r = cli("serve", "--web-port", str(port))
    assert r.code == 0, r.stderr
    assert f"web app: http://127.0.0.1:{port}  (links in mail start with http://127.0.0.1:{port})" in r.stdout
    assert flows_seen["web"] == {"/sign-in": 200, "/static/forumflow.css": 200}  # answering while the flows are served
    assert flows_seen["base_url"] == f"http://127.0.0.1:{port}"  # flow runs put the same links in mail
    assert _status(f"http://127.0.0.1:{port}/sign-in") is None  # stopped with the flows


def test_serve_without_the_web_app(cli: Invoke, flows_seen: dict[str, Any]) -> None:
    port = free_port()
    flows_seen["url"] = f"http://127.0.0.1:{port}"
    r = cli("serve", "--no-web", "--web-port", str(port))
    assert r.code == 0, r.stderr
    assert "web app" not in r.stdout
    assert flows_seen["web"] == {"/sign-in": None, "/static/forumflow.css": None}


def test_serve_refuses_a_taken_web_port(cli: Invoke, flows_seen: dict[str, Any]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("serve", "--web-port", str(port))
    assert r.code == 1 and re.fullmatch(rf"error: cannot listen on 127\.0\.0\.1:{port}: .+\n", r.stderr), r.stderr
    assert "web" not in flows_seen  # the flows never started
