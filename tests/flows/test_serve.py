"""``forumflow serve`` on a fresh data dir: a local Prefect server, both deployments, scheduled runs that complete."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

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
        deployments = {d["name"]: d for d in _post(f"{api}/deployments/filter", {})}
        assert set(deployments) == {"review", "dispatch"}
        intervals = {name: d["schedules"][0]["schedule"]["interval"] for name, d in deployments.items()}
        assert intervals == {"review": 60, "dispatch": 120}
        assert "review every 1 min, dispatch every 2 min" in Path(log.name).read_text()

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

        assert _wait_for(gaps, 90, "the planned runs of both deployments") == {"review": {60.0}, "dispatch": {120.0}}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    server_gone = subprocess.run(
        ["pgrep", "-f", f"prefect server start --host 127.0.0.1 --port {api.split(':')[-1].split('/')[0]}"],
        capture_output=True, check=False,
    )
    assert server_gone.returncode == 1, "the local Prefect server outlived forumflow serve"
