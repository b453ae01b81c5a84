"""``forumflow serve`` on a fresh data dir: a local Prefect server, both deployments, scheduled runs that complete."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.flows.conftest import interrupt

pytestmark = pytest.mark.slow


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_runs_both_flows_on_their_schedules(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FORUMFLOW_"))}
    env |= {
        # Two different intervals: a swap between the flows' schedules shows.
        "FORUMFLOW_DATA_DIR": str(tmp_path / "data"), "FORUMFLOW_REVIEW_INTERVAL_MINUTES": "1",
        "FORUMFLOW_DISPATCH_INTERVAL_MINUTES": "2", "FORUMFLOW_SMTP_PORT": "1", "COLUMNS": "200",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
    }
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cli.main import main; main()", "serve", "--port", "0", "--web-port", "0"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    try:
        def ui_url() -> str | None:
            match = re.search(r"Prefect UI: (http://127\.0\.0\.1:\d+)", Path(log.name).read_text())
            return match.group(1) if match else None

        api = _wait_for(ui_url, 150, "the Prefect server") + "/api"
        assert (tmp_path / "data" / "prefect" / "prefect.db").is_file()  # the server's home is in the data dir
        web = re.search(r"web app: (http://127\.0\.0\.1:\d+)", Path(log.name).read_text())
        assert web, "serve did not start the web app"
        with urllib.request.urlopen(f"{web.group(1)}/sign-in", timeout=10) as page:  # beside the flows
            assert page.status == 200

        def completed() -> set[str] | None:
            flows = {f["id"]: f["name"] for f in _post(f"{api}/flows/filter", {})}
            runs = _post(f"{api}/flow_runs/filter", {})
            done = {flows[r["flow_id"]] for r in runs if r["state_type"] == "COMPLETED" and r["deployment_id"]}
            return done if done >= {"review", "dispatch"} else None

        assert _wait_for(completed, 150, "scheduled runs of review and dispatch") >= {"review", "dispatch"}
        flows = {f["id"]: f["name"] for f in _post(f"{api}/flows/filter", {})}
        deployments = {f"{flows[d['flow_id']]}/{d['name']}": d for d in _post(f"{api}/deployments/filter", {})}
        assert set(deployments) == {"review/serve", "dispatch/serve"}  # never the pool's review/pool, dispatch/pool
        intervals = {name: d["schedules"][0]["schedule"]["interval"] for name, d in deployments.items()}
        assert intervals == {"review/serve": 60, "dispatch/serve": 120}
        assert "review/serve every 1 min, dispatch/serve every 2 min" in Path(log.name).read_text()

        def gaps() -> dict[str, set[float]] | None:
            """Seconds between the runs the scheduler planned for each deployment."""
            runs = _post(f"{api}/flow_runs/filter", {})
            planned: dict[str, list[datetime]] = {}
            for name, d in deployments.items():
                starts = sorted(datetime.fromisoformat(r["expected_start_time"]) for r in runs if r["deployment_id"] == d["id"])
                planned[name] = starts
            if any(len(starts) < 3 for starts in planned.values()):
                return None
            return {name: {(b - a).total_seconds() for a, b in itertools.pairwise(starts)} for name, starts in planned.items()}

        assert _wait_for(gaps, 90, "the planned runs of both deployments") == {"review/serve": {60.0}, "dispatch/serve": {120.0}}
    finally:
        interrupt(proc)
        log.close()
    port = api.split(":")[-1].split("/")[0]
    lines = Path(log.name).read_text().splitlines()
    # After Ctrl-C: the local server's end, the web app's, then serve's own last line.
    assert lines[-3:] == [f"local Prefect server on 127.0.0.1:{port} stopped", "web app stopped", "forumflow serve stopped"], (
        lines[-5:]
    )
    server_gone = subprocess.run(
        ["pgrep", "-f", f"prefect server start --host 127.0.0.1 --port {port}"],
        capture_output=True, check=False,
    )
    assert server_gone.returncode == 1, "the local Prefect server outlived forumflow serve"


def _deploy(client: Any, flow: str, name: str, *, pool: str | None = None, paused: bool = False) -> Any:
    flow_id = client.create_flow_from_name(flow)
    return client.create_deployment(flow_id=flow_id, name=name, work_pool_name=pool, paused=paused)


def test_serve_refuses_next_to_active_pool_deployments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from cli.main import app
    from flows.serve import active_pool_deployments

    pool = f"forumflow-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        made = [
            _deploy(client, "review", "serve"),  # what forumflow serve registers: no work pool
            _deploy(client, "dispatch", "pool", pool=pool, paused=True),  # paused: no harm
            _deploy(client, "unrelated", "pool", pool=pool),
        ]
        try:
            assert active_pool_deployments() == []
            made.append(_deploy(client, "review", "pool", pool=pool))
            assert active_pool_deployments() == ["review/pool"]

            monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
            monkeypatch.setenv("FORUMFLOW_DATA_DIR", str(tmp_path / "data"))
            result = CliRunner().invoke(app, ["serve"], env=dict(os.environ), catch_exceptions=False)
        finally:
            for deployment_id in made:
                client.delete_deployment(deployment_id)
            client.delete_work_pool(pool)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: the Prefect server at ")
    assert "already runs review/pool on a work pool" in result.stderr and "prefect deployment delete review/pool" in result.stderr


def test_serve_against_an_unreachable_server_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from notifications.sink import free_port

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    monkeypatch.setenv("FORUMFLOW_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["serve"], env=dict(os.environ), catch_exceptions=False)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "cannot be reached" in result.stderr
