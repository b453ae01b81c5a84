"""Where one-off flow runs go: the server ``forumflow serve`` recorded, else PREFECT_API_URL, else a temporary one."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from cli.main import app
from config import Settings
from flows.context import flow_context
from flows.serve import SERVER_RECORD, flow_runs, forget_server, record_server, recorded_server, server_record
from models import session_scope
from models.tables import Event
from notifications.sink import free_port
from tests.factories import T0, make_proposal
from tests.flows.conftest import interrupt

DAY = dt.timedelta(days=1)


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _current_api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url
    return str(url)


# ---------------------------------------------------------------------------- the record serve leaves in the data dir
def test_the_record_names_this_process_and_is_forgotten_by_it_alone(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    path = record_server(settings, "http://127.0.0.1:4321/api")
    assert path == server_record(settings) == tmp_path.resolve() / SERVER_RECORD
    assert json.loads(path.read_text()) == {"pid": os.getpid(), "url": "http://127.0.0.1:4321/api"}
    path.write_text(json.dumps({"pid": os.getpid() + 1, "url": "http://127.0.0.1:1/api"}))  # another serve took over
    forget_server(path)
    assert path.exists()
    record_server(settings, "http://127.0.0.1:4321/api")
    forget_server(path)
    assert not path.exists()


def test_a_running_server_is_found_through_the_record(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    record_server(settings, _current_api_url())  # this process "serves", and the session's server answers
    assert recorded_server(settings) == _current_api_url()


def test_a_record_whose_process_is_gone_is_ignored_and_removed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    server_record(settings).write_text(json.dumps({"pid": _dead_pid(), "url": _current_api_url()}))
    assert recorded_server(settings) is None
    assert not server_record(settings).exists()


def test_a_record_whose_server_does_not_answer_is_ignored(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    record_server(settings, f"http://127.0.0.1:{free_port()}/api")
    started = time.monotonic()
    assert recorded_server(settings, timeout=1.0) is None
    assert time.monotonic() - started < 5
    assert server_record(settings).exists()  # its process lives: it may be starting, leave the record to it


@pytest.mark.parametrize("content", ["", "{", "[]", '{"pid": "1", "url": "x"}', '{"pid": 1}', '{"pid": true, "url": "http://a"}',
                                     '{"pid": 1, "url": "file:///etc/passwd"}'])
def test_a_record_that_is_not_one_is_ignored(tmp_path: Path, content: str) -> None:
    settings = Settings(data_dir=tmp_path)
    server_record(settings).write_text(content)
    assert recorded_server(settings) is None


def test_flow_runs_use_the_recorded_server_then_prefect_api_url_then_prefect_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    with flow_runs(settings) as server:
        assert (server.origin, server.api_url, server.server) == ("settings", _current_api_url(), None)
    monkeypatch.setenv("PREFECT_API_URL", _current_api_url())
    with flow_runs(settings) as server:
        assert (server.origin, server.api_url, server.server) == ("environment", _current_api_url(), None)
        assert server.ready() is server
    record_server(settings, _current_api_url())
    with flow_runs(settings) as server:
        assert (server.origin, server.server) == ("serve", None)


# ---------------------------------------------------------------------------- --direct: the same sweep without Prefect
def _copy_db(url: str, to: Path) -> str:
    source = Path(url.removeprefix("sqlite:///"))
    flow_context(url).engine.dispose()
    shutil.copy(source, to)
    return f"sqlite:///{to}"


def _events(url: str) -> list[tuple[Any, ...]]:
    with session_scope(flow_context(url).engine) as s:
        return [(e.proposal_id, e.seq, e.action, e.actor, e.to_state, e.at, e.payload) for e in s.exec(select(Event))]


def test_review_direct_prints_and_writes_what_the_flow_does(forum_url: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = flow_context(forum_url)
    for state in ("in_review", "in_review", "reviewed", "drafted"):
        make_proposal(ctx.engine, ctx.lifecycle, state=state)
    make_proposal(ctx.engine, ctx.lifecycle, state="reviewed", now=T0 + 5 * DAY)
    direct_url = _copy_db(forum_url, tmp_path / "direct.db")
    monkeypatch.setenv("FORUMFLOW_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    outputs: dict[str, list[str]] = {}
    for url, how in ((forum_url, "--flow"), (direct_url, "--direct")):
        outputs[how] = []
        for at in (T0 + 23 * DAY, T0 + 30 * DAY):
            for as_json in (["--json"], []):
                r = runner.invoke(app, ["--db", url, "review", how, "--now", at.isoformat(), "--batch-size", "2", *as_json])
                assert r.exit_code == 0, r.output
                outputs[how].append(r.stdout)
    assert outputs["--direct"] == outputs["--flow"]
    first = json.loads(outputs["--flow"][0])
    assert first["reminders"] >= 3 and first["proposals"] >= 3  # the review had work to do
    assert _events(direct_url) == _events(forum_url)


def test_review_direct_needs_no_prefect(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORUMFLOW_", "PREFECT_"))}
    env["FORUMFLOW_DATA_DIR"] = str(tmp_path / "data")
    code = (
        "import sys\n"
        "from cli.main import app\n"
        "for args in (['review', '--direct'], ['dispatch', '--direct', '--json']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), e.code\n"
        "print('prefect' in sys.modules)\n"
    )
    env["FORUMFLOW_SMTP_PORT"] = str(free_port())
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("review at ")
    assert r.stdout.strip().splitlines()[-1] == "False"
    assert not (tmp_path / "data" / "prefect").exists()


# ---------------------------------------------------------------------------- a real serve, and no serve at all
def _clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FORUMFLOW_"))}
    return env | {
        "FORUMFLOW_DATA_DIR": str(data_dir), "FORUMFLOW_SMTP_PORT": str(free_port()), "COLUMNS": "200",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
    }


def _forumflow(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from cli.entry import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _manual_runs(api_url: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(flow name, state, parameters) of the flow runs on the server at ``api_url`` that no deployment started."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        names = {f.id: f.name for f in client.read_flows()}
        return sorted((names[r.flow_id], r.state_type.value if r.state_type else "", r.parameters)
                      for r in client.read_flow_runs() if r.deployment_id is None)


@pytest.mark.slow
def test_review_and_dispatch_run_on_the_server_of_a_running_serve(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _clean_env(data) | {"FORUMFLOW_REVIEW_INTERVAL_MINUTES": "600", "FORUMFLOW_DISPATCH_INTERVAL_MINUTES": "600"}
    assert _forumflow(env, "init").returncode == 0
    pid = _forumflow(env, "propose", "--group", "industry", "--as", "zhao.lei", "--title", "t", "--at", T0.isoformat()).stdout
    assert _forumflow(env, "act", pid.strip(), "submit", "--as", "zhao.lei", "--at", T0.isoformat()).returncode == 0
    log = (tmp_path / "serve.log").open("w+")
    serve = subprocess.Popen([sys.executable, "-c", "from cli.main import main; main()", "serve", "--port", "0", "--no-web"],
                             env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not (ui := re.search(r"Prefect UI: (http://127\.0\.0\.1:\d+)", Path(log.name).read_text())):
            assert serve.poll() is None and time.monotonic() < deadline, Path(log.name).read_text()
            time.sleep(0.5)
        record = json.loads((data / SERVER_RECORD).read_text())
        assert record == {"pid": serve.pid, "url": ui.group(1) + "/api"}

        started = time.monotonic()
        review = _forumflow(env, "review", "--json", "--now", (T0 + 23 * DAY).isoformat())
        took = time.monotonic() - started
        assert review.returncode == 0, review.stderr
        assert json.loads(review.stdout)["reminders"] == 1
        assert "temporary" not in review.stderr
        dispatch = _forumflow(env, "dispatch", "--flow", "--json", "--now", (T0 + 23 * DAY).isoformat())
        assert "temporary" not in dispatch.stderr and "dispatch" in {n for n, _, _ in _manual_runs(record["url"])}
        runs = [(state, params) for name, state, params in _manual_runs(record["url"]) if name == "review"]
        assert runs == [("COMPLETED", {"now": (T0 + 23 * DAY).isoformat(), "batch_size": 500, "db_url": None})], runs
        print(f"review on serve's server: {took:.1f} s")
    finally:
        interrupt(serve)
        log.close()
    assert not (data / SERVER_RECORD).exists()  # serve removed its record on the way out


@pytest.mark.slow
def test_without_serve_a_temporary_server_runs_the_flow_and_keeps_its_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _clean_env(data)
    assert _forumflow(env, "init").returncode == 0
    (data / SERVER_RECORD).write_text(json.dumps({"pid": _dead_pid(), "url": f"http://127.0.0.1:{free_port()}/api"}))
    review = _forumflow(env, "review", "--json", "--now", T0.isoformat())
    assert review.returncode == 0, review.stderr
    assert review.stderr.count("starting a temporary one") == 1
    assert json.loads(review.stdout)["proposals"] == 0
    assert not (data / SERVER_RECORD).exists()  # the stale record was removed
    port = re.search(r"127\.0\.0\.1:(\d+)", review.stderr)
    assert port
    gone = subprocess.run(["pgrep", "-f", f"prefect server start --host 127.0.0.1 --port {port.group(1)} "],
                          capture_output=True, check=False)
    assert gone.returncode == 1, "the temporary Prefect server outlived the command"
    # Its runs stay in the Prefect home in the data dir: the flow run, and its task run (sent before the server stopped).
    with sqlite3.connect(data / "prefect" / "prefect.db") as db:
        flows = db.execute("SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id").fetchall()
        tasks = db.execute("SELECT name, state_type FROM task_run").fetchall()
    assert flows == [("review", "COMPLETED")]
    assert [(name.rsplit("-", 1)[0], state) for name, state in tasks] == [("select-due", "COMPLETED")]
